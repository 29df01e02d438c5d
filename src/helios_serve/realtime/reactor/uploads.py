"""Upload slots of one session: reserve (name, size, type) → id, PUT the bytes, resolve id → bytes.

The bytes live in memory with the session (capped per file, per session and, through one
`UploadBudget` shared by every session, per server) and are dropped when it ends. A reservation
charges its declared size to the budget at once, so many idle reservations cannot add up to
more memory than the budget. Errors are the domain's kinds (too large, conflict, not found,
unavailable), mapped to HTTP with every other error's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from helios_serve.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    TooLargeError,
    UnavailableError,
)


class UploadTooLargeError(TooLargeError):
    code = "file_too_large"


class UploadBudgetError(UnavailableError):
    code = "upload_budget_exhausted"


class UploadLimitError(ConflictError):
    """The session has reserved as many uploads as it may."""


class UnknownUploadError(NotFoundError):
    pass


class UploadSizeMismatchError(InvalidInputError):
    code = "size_mismatch"


@dataclass
class UploadSlot:
    id: str
    name: str
    size: int
    mime_type: str
    data: bytes | None = None

    @property
    def path(self) -> str:
        return f"uploads/{self.id}"


class UploadBudget:
    """Bytes reserved by every session's uploads together, under one server-wide cap."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self.used = 0

    def charge(self, size: int) -> None:
        if self.used + size > self.total_bytes:
            raise UploadBudgetError(
                f"the server holds {self.used} upload bytes of {self.total_bytes}; "
                "try again when a session ends",
                param="size",
            )
        self.used += size

    def refund(self, size: int) -> None:
        self.used = max(0, self.used - size)


class UploadStore:
    def __init__(
        self, max_bytes: int, max_slots: int = 32, budget: UploadBudget | None = None
    ) -> None:
        self.max_bytes = max_bytes
        self._max_slots = max_slots
        self._slots: dict[str, UploadSlot] = {}
        self._budget = budget or UploadBudget(max_bytes * max_slots)

    def reserve(self, name: str, size: int, mime_type: str) -> UploadSlot:
        if size > self.max_bytes:
            raise UploadTooLargeError(
                f"{size} bytes is over the limit of {self.max_bytes}", param="size"
            )
        if len(self._slots) >= self._max_slots:
            raise UploadLimitError(f"at most {self._max_slots} uploads per session")
        self._budget.charge(size)
        slot = UploadSlot(secrets.token_urlsafe(12), name, size, mime_type)
        self._slots[slot.id] = slot
        return slot

    def slot(self, upload_id: str) -> UploadSlot:
        slot = self._slots.get(upload_id)
        if slot is None:
            raise UnknownUploadError("no such upload", param="upload_id")
        return slot

    def write(self, upload_id: str, data: bytes) -> None:
        slot = self.slot(upload_id)
        if len(data) != slot.size:
            raise UploadSizeMismatchError(f"got {len(data)} bytes, {slot.size} were declared")
        slot.data = data

    def resolve(self, ref: str) -> bytes:
        """Bytes of an upload named by its id, its `path`, or its URL; `LookupError` if none."""
        upload_id = ref.rstrip("/").rsplit("/", 1)[-1]
        slot = self._slots.get(ref) or self._slots.get(upload_id)
        if slot is None:
            raise LookupError(f"no upload {ref[:80]!r}")
        if slot.data is None:
            raise LookupError(f"upload {slot.id} has no bytes yet (PUT it first)")
        return slot.data

    def clear(self) -> None:
        self._budget.refund(sum(slot.size for slot in self._slots.values()))
        self._slots.clear()
