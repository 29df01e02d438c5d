"""`JobRecords`: the seam between job records and where they are kept, and its vocabulary.

Two adapters, one per deployment: `jobs.sqlite.store.JobStore` (SQLite in the data directory,
`helios serve`) and `jobs.postgres.store.PostgresJobStore` (PostgreSQL, shared by a cluster's
gateways and workers). Both are `jobs.lifecycle.SqlJobRecords`: the lifecycle is written once
there, and each adapter supplies only its transactions and locking. Every call is synchronous
and short, meant for `asyncio.to_thread`; it commits before returning, obeys
`models.check_transition`, and a worker's writes are fenced by attempt (`StaleAttemptError`).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from helios_serve.errors import ConflictError, HeliosError, OverloadedError, UnavailableError
from helios_serve.jobs.models import Job, JobStatus

Order = Literal["asc", "desc"]

IDEMPOTENCY_TTL_S = 24 * 3600
"""How long an `Idempotency-Key` is remembered (Stripe's and OpenAI's 24 hours)."""


class StoreUnavailableError(UnavailableError):
    """The job database or the file store cannot be reached right now (restarting, a network
    cut); retry later. The request changed nothing that was acknowledged. The message is for
    clients; the driver's own words are in `__cause__` (the log has them)."""

    code = "store_unavailable"
    retry_after_s = 2

    def __init__(self, what: str = "job store") -> None:
        super().__init__(f"The {what} is unavailable right now; retry shortly.")


class JobStoreError(HeliosError):
    """The jobs database cannot be used (e.g. written by a newer version of this server), or a
    record cannot be written as asked (a duplicate id)."""

    code = "job_store_error"


class QueueFullError(OverloadedError):
    """The queue holds `max_queue` jobs already; nothing was stored."""

    code = "queue_full"

    def __init__(self, depth: int) -> None:
        super().__init__(f"the queue is full ({depth} jobs waiting); retry later")
        self.depth = depth


class IdempotencyConflictError(ConflictError):
    """An `Idempotency-Key` already used for a different request (or a deleted video)."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class IdempotencyClaim:
    """A client's `Idempotency-Key` and a fingerprint of the request it came with."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class RecoveryReport:
    """What `recover_*` did to jobs whose worker was lost."""

    requeued_ids: tuple[str, ...] = ()
    failed_ids: tuple[str, ...] = ()

    @property
    def requeued(self) -> int:
        return len(self.requeued_ids)

    @property
    def failed(self) -> int:
        return len(self.failed_ids)


class RecordEvents(Protocol):
    """Told after a commit that a job was claimed or completed: a seam for measurement
    (`helios bench-dispatch` times dispatch with it); production passes none."""

    def claimed(self, job: Job) -> None: ...

    def completed(self, job: Job) -> None: ...


class JobRecords(Protocol):
    """Durable job records and their lifecycle."""

    def admit(
        self, job: Job, *, max_queue: int | None = None, claim: IdempotencyClaim | None = None
    ) -> tuple[Job, bool]: ...

    def create(self, job: Job) -> Job: ...

    def find_claimed(self, claim: IdempotencyClaim) -> Job | None: ...

    def get(self, job_id: str) -> Job: ...

    def list(
        self, after: str | None = None, limit: int = 20, order: Order = "desc"
    ) -> tuple[builtins.list[Job], bool]: ...

    def delete(self, job_id: str) -> Job: ...

    def count_by_status(self) -> dict[JobStatus, int]: ...

    def queue_depth(self) -> int: ...

    def count_resumed(self) -> int: ...

    def find_by_video_digest(self, sha256: str) -> Job | None: ...

    # -- the worker's side (each write fenced by `attempt` when given) --------------------

    def claim_next(self) -> Job | None: ...

    def take(
        self, job_id: str, max_attempts: int, *, lease_s: float | None = None
    ) -> Job | None: ...

    def update_progress(
        self, job_id: str, progress: int, frames_done: int, *, attempt: int | None = None
    ) -> Job: ...

    def record_chunk(
        self,
        job_id: str,
        chunks_done: int,
        progress: int,
        frames_done: int,
        *,
        attempt: int | None = None,
    ) -> Job: ...

    def mark_resumed(self, job_id: str, chunk: int, *, attempt: int | None = None) -> Job: ...

    def heartbeat(self, job_id: str, *, attempt: int | None = None) -> None: ...

    def complete(
        self,
        job_id: str,
        file_name: str,
        inference_time_s: float,
        num_frames_delivered: int,
        *,
        expires_at: int | None = None,
        video_sha256: str | None = None,
        stats: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> Job: ...

    def fail(self, job_id: str, code: str, message: str, *, attempt: int | None = None) -> Job: ...

    def requeue(self, job_id: str, *, attempt: int | None = None) -> Job: ...

    # -- crash recovery (a shared database has no "after restart": other workers run) ------

    def recover_stale(self, lease_s: float, max_attempts: int = 2) -> RecoveryReport: ...

    def close(self) -> None: ...
