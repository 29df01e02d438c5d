"""Domain errors with machine-readable codes; every layer maps these to its own wire format.

Errors of every layer derive from the kinds here (invalid input, not found, conflict, too large,
unavailable), so the HTTP edge maps them all through one table (`web.errors`), whichever way in
raised them.
"""

from __future__ import annotations


class HeliosError(Exception):
    """Base of every error this package raises on purpose."""

    code = "helios_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:  # a more specific code than the class's own
            self.code = code


class InvalidInputError(HeliosError):
    """A request, file or flag that cannot be used as given (a 4xx, never a crash)."""

    code = "invalid_input"


class UnprocessableError(InvalidInputError):
    """Input of the right kind that cannot be used (corrupt, truncated, a decompression
    bomb): 422."""

    code = "unprocessable_media"


class NotFoundError(HeliosError):
    """No such thing (a job, a session, an upload): 404 at the HTTP edge."""

    code = "not_found"


class ConflictError(HeliosError):
    """Not possible in the current state (try later, or do something else first): 409."""

    code = "conflict"


class TooLargeError(HeliosError):
    """Over a size limit: 413."""

    code = "request_too_large"


class UnavailableError(HeliosError):
    """Full for now (slots, budgets): 503 with this message and `Retry-After`."""

    code = "service_unavailable"
    retry_after_s = 5


class InsufficientStorageError(UnavailableError):
    """The disk under the job store or the files is full: 507; nothing was stored."""

    code = "insufficient_storage"
    retry_after_s = 60


class OverloadedError(HeliosError):
    """Too much work waiting already (a full queue): 429 with `Retry-After`; nothing stored."""

    code = "rate_limit_exceeded"
    retry_after_s = 10


class NotAuthenticatedError(HeliosError):
    """No valid API key with a request to a guarded route: 401."""

    code = "invalid_api_key"


class ForbiddenError(HeliosError):
    """The caller is known but may not do this (a write from another web site): 403."""

    code = "cross_site_request"


class UpgradeRequiredError(HeliosError):
    """The client speaks an older protocol version than this server can answer: 426."""

    code = "upgrade_required"


class NotSupportedError(HeliosError):
    """The client asks for something newer than this server implements: 501."""

    code = "not_implemented"


class CheckpointError(HeliosError):
    """A checkpoint directory or hub id that cannot be loaded: says which file and what is wrong."""

    code = "invalid_checkpoint"


class StreamCancelledError(HeliosError):
    """A stream was cancelled at a chunk or step boundary."""

    code = "cancelled"


class EngineRestartedError(HeliosError):
    """The engine process died or stalled and was restarted: streams opened before are gone."""

    code = "engine_restarted"


class EngineFailedError(HeliosError):
    """An error raised inside the engine process, carried over with its code."""

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.code = code
