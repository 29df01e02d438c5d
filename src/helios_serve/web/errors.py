"""OpenAI's error envelope and the exception handlers that guarantee every error uses it.

The only module that knows HTTP statuses: everything else raises domain errors
(`helios_serve.errors` and their subclasses), mapped here by `DOMAIN_STATUS`.

Every error leaves the server as `{"error": {"message", "type", "param", "code"}}` in compact
JSON, whatever raised it: an `ApiError`, a domain `HeliosError`, FastAPI's own validation,
Starlette's routing (404, 405) or a bug (500, logged). Codes used by the `/v1/videos` request
side (`param` names the field; `extra_params.<key>` for Helios keys):

| status | type                      | code                       | when |
|--------|---------------------------|----------------------------|------|
| 400    | invalid_request_error     | missing_required_parameter | `prompt` absent |
| 400    | invalid_request_error     | invalid_type               | "abc" for an int |
| 400    | invalid_request_error     | invalid_value              | out of range, blank, bad size |
| 400    | invalid_request_error     | model_not_found            | not the served model |
| 400    | invalid_request_error     | unknown_parameter          | unknown `extra_params` key |
| 400    | invalid_request_error     | unsupported_parameter      | impossible for the variant |
| 400    | invalid_request_error     | duplicate_parameter        | a form field given twice |
| 400    | invalid_request_error     | invalid_json               | malformed JSON |
| 400    | invalid_request_error     | invalid_body               | broken multipart, framing |
| 400    | invalid_request_error     | invalid_input_reference    | not image/video, a URL |
| 404    | invalid_request_error     | not_found                  | unknown route or id |
| 405    | invalid_request_error     | method_not_allowed         | wrong method |
| 409    | invalid_request_error     | conflict, cancelled        | conflicting state |
| 413    | invalid_request_error     | request_too_large          | body over the cap |
| 413    | invalid_request_error     | file_too_large             | reference over the cap |
| 415    | invalid_request_error     | unsupported_media_type     | neither form nor JSON |
| 422    | invalid_request_error     | unprocessable_media        | corrupt/truncated/bomb |
| 422    | invalid_request_error     | (the job's)                | a failed `/sync` job |
| 401    | invalid_request_error     | invalid_api_key            | no valid API key |
| 403    | invalid_request_error     | cross_site_request         | a write from another site |
| 426    | invalid_request_error     | upgrade_required           | an older client protocol |
| 429    | rate_limit_error          | queue_full                 | the queue is full |
| 501    | server_error              | not_implemented            | a newer client protocol |
| 503    | service_unavailable_error | (the raiser's)             | engine not ready |
| 500    | server_error              | internal_error             | a bug; never bad input |
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from helios_serve.errors import (
    CheckpointError,
    ConflictError,
    ForbiddenError,
    HeliosError,
    InsufficientStorageError,
    InvalidInputError,
    NotAuthenticatedError,
    NotFoundError,
    NotSupportedError,
    OverloadedError,
    StreamCancelledError,
    TooLargeError,
    UnavailableError,
    UnprocessableError,
    UpgradeRequiredError,
)
from helios_serve.web.responses import CompactJSONResponse

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
RATE_LIMIT = "rate_limit_error"
SERVICE_UNAVAILABLE = "service_unavailable_error"
SERVER_ERROR = "server_error"

_STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "rate_limit_exceeded",
    503: "server_is_overloaded",
    507: "insufficient_storage",
}

DEFAULT_DOMAIN_STATUS: Mapping[type[HeliosError], int] = {
    InvalidInputError: 400,
    UnprocessableError: 422,
    NotAuthenticatedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    StreamCancelledError: 409,
    TooLargeError: 413,
    UpgradeRequiredError: 426,
    OverloadedError: 429,
    NotSupportedError: 501,
    InsufficientStorageError: 507,
    UnavailableError: 503,
    CheckpointError: 503,
}
"""HTTP status per domain error class (looked up along the MRO; unmapped ones are 500)."""

_INTERNAL_MESSAGE = "The server had an error while processing your request."
_UNAVAILABLE_MESSAGE = "The model is not available right now; try again later."


def error_type_for(status: int) -> str:
    """OpenAI's `error.type` for an HTTP status."""
    if status == 429:
        return RATE_LIMIT
    if status == 503:
        return SERVICE_UNAVAILABLE
    return SERVER_ERROR if status >= 500 else INVALID_REQUEST


class ApiError(HeliosError):
    """An error with everything its HTTP answer needs; raise it from any request handler."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.code = code
        self.type = type or error_type_for(status)
        self.headers = dict(headers or {})

    def response(self) -> CompactJSONResponse:
        body = error_body(self.message, self.type, self.param, self.code)
        return CompactJSONResponse(body, status_code=self.status, headers=self.headers)


def bad_request(message: str, *, param: str | None, code: str = "invalid_value") -> ApiError:
    """A 400 `invalid_request_error`."""
    return ApiError(400, message, code=code, param=param)


def unsupported_media_type(message: str) -> ApiError:
    """A 415: a body in a Content-Type no route here reads."""
    return ApiError(415, message, code="unsupported_media_type")


def failed_generation(code: str | None, message: str | None) -> ApiError:
    """How `/v1/videos/sync` answers a job that failed: our bug (`internal_error`) is a 500,
    anything else a 422 with the job's own code and message."""
    status = 500 if code == "internal_error" else 422
    return ApiError(status, message or "generation failed", code=code or "generation_failed")


def readiness_status(ready: bool) -> int:
    """`/ready`: 200, or 503 while the engine (or every worker) is away."""
    return 200 if ready else 503


def is_full(status: int) -> bool:
    """A relayed answer that means "no free slot here, try another" (503)."""
    return status == 503


def is_created(status: int) -> bool:
    """A relayed answer that made something (200 or 201)."""
    return status in (200, 201)


def error_body(
    message: str,
    type: str,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`, plus a top-level
    `detail` string (the message) that clients written for vLLM-Omni's errors read."""
    error = {"message": message, "type": type, "param": param, "code": code}
    return {"error": error, "detail": message}


def api_error_from_domain(
    exc: HeliosError, statuses: Mapping[type[HeliosError], int] = DEFAULT_DOMAIN_STATUS
) -> ApiError:
    """Translate a domain error; `code` and `param` pass through, 5xx messages are generic.

    Domain messages can name files or internals, so only 4xx ones reach the client; raise an
    `ApiError` to send a specific 5xx message.
    """
    if isinstance(exc, ApiError):
        return exc
    status = next((statuses[c] for c in type(exc).__mro__ if c in statuses), 500)
    if isinstance(exc, UnavailableError | OverloadedError):  # for the client: how long, why
        retry = {"Retry-After": str(exc.retry_after_s)}
        return ApiError(status, exc.message, code=exc.code, param=exc.param, headers=retry)
    if isinstance(exc, NotAuthenticatedError):
        challenge = {"WWW-Authenticate": "Bearer"}
        return ApiError(status, exc.message, code=exc.code, param=exc.param, headers=challenge)
    if isinstance(exc, NotSupportedError):  # a 5xx whose message is written for the client
        return ApiError(status, exc.message, code=exc.code, param=exc.param)
    if status == 503:
        message = _UNAVAILABLE_MESSAGE
    else:
        message = exc.message if status < 500 else _INTERNAL_MESSAGE
    return ApiError(status, message, code=exc.code, param=exc.param)


def _loc_text(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def api_error_from_validation(
    errors: Iterable[Mapping[str, Any]], *, prefix: str = "", skip_sources: bool = False
) -> ApiError:
    """A 400 for the first pydantic/FastAPI validation error; the bad value is never echoed.

    `prefix` is put before the field name in `param` ("extra_params."); with `skip_sources`
    a leading "body"/"query"/"path"/... in the location is dropped (FastAPI's errors).
    """
    first = next(iter(errors), None)
    if first is None:
        return bad_request("Invalid request.", param=None, code="invalid_body")
    loc = list(first.get("loc", ()))
    if skip_sources and loc and loc[0] in ("body", "query", "path", "header", "cookie", "form"):
        loc = loc[1:]
    names = [p for p in loc if isinstance(p, str)]
    param = prefix + ".".join(names) if names else (prefix.rstrip(".") or None)
    where = prefix + _loc_text(loc) if loc else (prefix.rstrip(".") or "request body")
    kind = str(first.get("type", ""))
    msg = str(first.get("msg", "invalid value"))
    if kind == "missing":
        return bad_request(
            f"Missing required parameter: '{where}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind == "extra_forbidden":
        return bad_request(f"Unknown parameter: '{where}'.", param=param, code="unknown_parameter")
    if kind.startswith("json_"):
        return bad_request(f"Invalid JSON in {where}: {msg}.", param=param, code="invalid_json")
    code = (
        "invalid_type" if kind.endswith(("_type", "_parsing", "_parsing_size")) else "invalid_value"
    )
    return bad_request(f"Invalid '{where}': {msg}.", param=param, code=code)


def _http_exception_error(request: Request, exc: HTTPException) -> ApiError:
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
    path = request.url.path[:200]
    if status == 404 and message == phrase:
        message = f"Not found: {request.method} {path}"
    elif status == 405 and message == phrase:
        message = f"Method {request.method} is not allowed on {path}"
    code = _STATUS_CODES.get(status, f"http_{status}")
    return ApiError(status, message, code=code, headers=exc.headers)


def storage_error(exc: BaseException) -> ApiError | None:
    """507 for a full disk, 503 for a database that is busy or gone; None for anything else."""
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or (
        isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
    )
    if full:
        return ApiError(
            507,
            "The server's disk is full; nothing was stored. Retry later.",
            code="insufficient_storage",
            headers={"Retry-After": "60"},
        )
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return ApiError(
            503,
            "The job store is not available right now; retry later.",
            code="store_unavailable",
            headers={"Retry-After": "10"},
        )
    return None


def install_error_handlers(
    app: FastAPI, domain_statuses: Mapping[type[HeliosError], int] | None = None
) -> None:
    """Route every exception to the envelope; `domain_statuses` adds or overrides mappings."""
    statuses = {**DEFAULT_DOMAIN_STATUS, **(domain_statuses or {})}

    async def on_helios(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HeliosError)
        err = api_error_from_domain(exc, statuses)
        if err.status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return err.response()

    async def on_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return api_error_from_validation(exc.errors(), skip_sources=True).response()

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _http_exception_error(request, exc).response()

    async def on_disconnect(request: Request, _exc: Exception) -> Response:
        # Nobody is left to read this; answer anyway so the ASGI cycle ends cleanly.
        logger.info("client went away during %s %s", request.method, request.url.path)
        return bad_request(
            "Client disconnected.", param=None, code="client_disconnected"
        ).response()

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        storage = storage_error(exc)
        if storage is not None:  # the disk or the database, not a bug: say so, never a 500
            logger.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
            return storage.response()
        logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return ApiError(500, _INTERNAL_MESSAGE, code="internal_error").response()

    app.add_exception_handler(HeliosError, on_helios)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(Exception, on_unexpected)
    # Storage faults get their own handlers: Starlette re-raises whatever reaches the
    # `Exception` handler after answering, which would log a full disk as a crash.
    app.add_exception_handler(sqlite3.Error, on_unexpected)
    app.add_exception_handler(OSError, on_unexpected)
