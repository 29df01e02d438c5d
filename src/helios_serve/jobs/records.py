"""`JobRecords`: the seam between job records and where they are kept.

Two implementations, chosen by the `--database` URL: `jobs.store.JobStore` (SQLite in the data
directory, the single-node default) and `cluster.pg_store.PostgresJobStore` (PostgreSQL, shared
by gateways and workers). Both are synchronous and short per call, meant for
`asyncio.to_thread`; both commit before returning, obey `models.check_transition`, and fence
every worker write by attempt (`StaleAttemptError`).
"""

from __future__ import annotations

import builtins
from typing import Any, Literal, Protocol

from helios_serve.errors import UnavailableError
from helios_serve.jobs.models import Job, JobStatus
from helios_serve.jobs.store import IdempotencyClaim, RecoveryReport

Order = Literal["asc", "desc"]


class StoreUnavailableError(UnavailableError):
    """The job database cannot be reached right now (restarting, network); retry later.

    A 503 with `Retry-After` wherever it surfaces (the error map's `UnavailableError`); the job
    API answers it with a message of its own (`api.app`), not the driver's."""

    code = "store_unavailable"
    retry_after_s = 2


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

    def find_by_video_digest(self, sha256: str) -> Job | None: ...

    # -- the worker's side (each write fenced by `attempt` when given) --------------------

    def claim_next(self) -> Job | None: ...

    def take(self, job_id: str, max_attempts: int) -> Job | None: ...

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
