"""`PostgresJobStore`: the `JobRecords` of cluster mode, shared by every gateway and worker.

The same lifecycle as the SQLite `JobStore` (the pure rules live in `jobs.models`), the same
row mapping (`jobs.schema`), on PostgreSQL: row locks (`FOR UPDATE`) instead of SQLite's one
writer, `SKIP LOCKED` claims, and an advisory lock that makes admission (queue limit plus
idempotency key) one serial decision across gateways. Connection errors become
`StoreUnavailableError` (see `cluster.pg`).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from helios_serve.cluster.pg import Conn, open_pool, transaction
from helios_serve.cluster.pg_rows import fetch_job, insert_job, readable, save_job
from helios_serve.cluster.pg_schema import migrate
from helios_serve.errors import InvalidInputError
from helios_serve.jobs.models import (
    Job,
    JobNotFoundError,
    JobStatus,
    back_to_queue,
    check_attempt,
    check_transition,
    claimed,
    is_valid_job_id,
    settle_lost,
    taken_over,
)
from helios_serve.jobs.records import Order
from helios_serve.jobs.schema import (
    COLUMNS,
    is_readable,
    quarantined,
    row_to_job,
)
from helios_serve.jobs.store import (
    IDEMPOTENCY_TTL_S,
    IdempotencyClaim,
    IdempotencyConflictError,
    InvalidTransitionError,
    QueueFullError,
    RecoveryReport,
)

ADMIT_LOCK = 0x48454C494F54
"""pg_advisory_xact_lock key that serialises admissions (queue limit + idempotency keys)."""


class PostgresJobStore:
    """Durable job records in PostgreSQL; every method is one short transaction."""

    def __init__(
        self, dsn: str, *, clock: Callable[[], float] = time.time, pool_size: int = 4
    ) -> None:
        self._clock = clock
        self.pool = open_pool(dsn, max_size=pool_size)
        try:
            with transaction(self.pool) as conn:  # an unreachable server: one clear error
                migrate(conn)
        except BaseException:
            self.pool.close()
            raise

    def _now(self) -> int:
        return int(self._clock())

    def _update_running(
        self, job_id: str, attempt: int | None, change: Callable[[Job], Job]
    ) -> Job:
        with transaction(self.pool) as conn:
            job = fetch_job(conn, job_id, lock=True)
            check_attempt(job, attempt)
            if job.status is not JobStatus.IN_PROGRESS:
                raise InvalidTransitionError(f"job {job_id} is {job.status.value}, not in_progress")
            updated = change(job)
            save_job(conn, updated)
        return updated

    def _transition(self, job_id: str, new: JobStatus, attempt: int | None, **changes: Any) -> Job:
        with transaction(self.pool) as conn:
            job = fetch_job(conn, job_id, lock=True)
            check_attempt(job, attempt)
            check_transition(job.status, new)
            updated = replace(job, status=new, **changes)
            save_job(conn, updated)
        return updated

    # -- records --------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        return self.admit(job)[0]

    def admit(
        self, job: Job, *, max_queue: int | None = None, claim: IdempotencyClaim | None = None
    ) -> tuple[Job, bool]:
        """As `JobStore.admit`: one decision, serial across every gateway."""
        if job.status is not JobStatus.QUEUED or job.attempts or job.progress:
            raise InvalidTransitionError("a new job must be queued, unclaimed and at 0 %")
        with transaction(self.pool) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADMIT_LOCK,))
            if claim is not None and (existing := self._claimed(conn, claim)) is not None:
                return existing, False
            if max_queue is not None:
                depth = self._depth(conn)
                if depth >= max_queue:
                    raise QueueFullError(depth)
            insert_job(conn, job)
            if claim is not None:
                conn.execute(
                    "INSERT INTO helios_idempotency (key, fingerprint, job_id, created_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (claim.key, claim.fingerprint, job.id, self._now()),
                )
        return job, True

    def _claimed(self, conn: Conn, claim: IdempotencyClaim) -> Job | None:
        conn.execute(
            "DELETE FROM helios_idempotency WHERE created_at < %s",
            (self._now() - IDEMPOTENCY_TTL_S,),
        )
        row = conn.execute(
            "SELECT fingerprint, job_id FROM helios_idempotency WHERE key = %s", (claim.key,)
        ).fetchone()
        if row is None:
            return None
        if row["fingerprint"] != claim.fingerprint:
            raise IdempotencyConflictError(
                "this Idempotency-Key was already used with a different request",
                param="Idempotency-Key",
            )
        try:
            return fetch_job(conn, row["job_id"])
        except JobNotFoundError:
            raise IdempotencyConflictError(
                f"this Idempotency-Key made {row['job_id']}, which has been deleted",
                param="Idempotency-Key",
            ) from None

    def find_claimed(self, claim: IdempotencyClaim) -> Job | None:
        with transaction(self.pool) as conn:
            return self._claimed(conn, claim)

    def get(self, job_id: str) -> Job:
        with transaction(self.pool) as conn:
            return fetch_job(conn, job_id)

    def list(
        self, after: str | None = None, limit: int = 20, order: Order = "desc"
    ) -> tuple[builtins.list[Job], bool]:
        if limit < 0:
            raise InvalidInputError(f"limit must not be negative, got {limit}", param="limit")
        if order not in ("asc", "desc"):
            raise InvalidInputError(f"order must be asc or desc, got {order!r}", param="order")
        op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        where = ""
        params: tuple[int, ...] = ()
        with transaction(self.pool) as conn:
            if after is not None:
                position = self._position(conn, after)
                if position is None:  # never existed: an empty page, as SQLite's store
                    return [], False
                params = position
                where = f"WHERE (created_at, seq) {op} (%s, %s)"
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM helios_jobs {where} "
                f"ORDER BY created_at {direction}, seq {direction} LIMIT %s",
                (*params, limit + 1),
            ).fetchall()
        jobs = [readable(row) for row in rows]
        return jobs[:limit], len(jobs) > limit

    @staticmethod
    def _position(conn: Conn, job_id: str) -> tuple[int, int] | None:
        """The job's sort key in `list`, (created_at, seq), also for a deleted one."""
        if not is_valid_job_id(job_id):
            return None
        for table in ("helios_jobs", "helios_deleted_jobs"):
            row = conn.execute(
                f"SELECT created_at, seq FROM {table} WHERE id = %s", (job_id,)
            ).fetchone()
            if row is not None:
                return int(row["created_at"]), int(row["seq"])
        return None

    def delete(self, job_id: str) -> Job:
        """Remove the record whatever its status (its place in the list is remembered)."""
        with transaction(self.pool) as conn:
            job = fetch_job(conn, job_id, lock=True)
            conn.execute(
                "INSERT INTO helios_deleted_jobs (id, created_at, seq, deleted_at) "
                "SELECT id, created_at, seq, %s FROM helios_jobs WHERE id = %s "
                "ON CONFLICT (id) DO NOTHING",
                (self._now(), job_id),
            )
            conn.execute("DELETE FROM helios_jobs WHERE id = %s", (job_id,))
        return job

    def count_by_status(self) -> dict[JobStatus, int]:
        with transaction(self.pool) as conn:
            rows = conn.execute("SELECT status, count(*) AS n FROM helios_jobs GROUP BY status")
            found = {JobStatus(r["status"]): int(r["n"]) for r in rows}
        return {status: found.get(status, 0) for status in JobStatus}

    def queue_depth(self) -> int:
        with transaction(self.pool) as conn:
            return self._depth(conn)

    @staticmethod
    def _depth(conn: Conn) -> int:
        row = conn.execute("SELECT count(*) AS n FROM helios_jobs WHERE status = 'queued'")
        found = row.fetchone()
        return 0 if found is None else int(found["n"])

    def count_resumed(self) -> int:
        """Jobs whose latest attempt continued an interrupted one (for /metrics)."""
        with transaction(self.pool) as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM helios_jobs WHERE resumed_from_chunk IS NOT NULL"
            ).fetchone()
        return 0 if row is None else int(row["n"])

    def find_by_video_digest(self, sha256: str) -> Job | None:
        with transaction(self.pool) as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM helios_jobs WHERE video_sha256 = %s "
                "AND status = 'completed' ORDER BY seq LIMIT 1",
                (sha256,),
            ).fetchone()
        return None if row is None else row_to_job(row)

    # -- the worker's side ----------------------------------------------------------------

    def claim_next(self) -> Job | None:
        with transaction(self.pool) as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM helios_jobs WHERE status = 'queued' "
                "ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED"
            ).fetchone()
            if row is None:
                return None
            if not is_readable(row):  # quarantined, so one bad row never stops the queue
                save_job(conn, quarantined(row, self._now()))
                return None
            job = claimed(row_to_job(row), self._clock())
            save_job(conn, job)
        return job

    def take(self, job_id: str, max_attempts: int) -> Job | None:
        with transaction(self.pool) as conn:
            try:
                job = fetch_job(conn, job_id, lock=True)
            except JobNotFoundError:
                return None
            taken = taken_over(job, max_attempts, self._clock())
            if taken is not None:
                save_job(conn, taken)
        return taken

    def update_progress(
        self, job_id: str, progress: int, frames_done: int, *, attempt: int | None = None
    ) -> Job:
        return self._update_running(
            job_id,
            attempt,
            lambda job: replace(
                job,
                progress=max(job.progress, min(100, max(0, int(progress)))),
                frames_done=max(job.frames_done, int(frames_done)),
                heartbeat_at=self._clock(),
            ),
        )

    def record_chunk(
        self,
        job_id: str,
        chunks_done: int,
        progress: int,
        frames_done: int,
        *,
        attempt: int | None = None,
    ) -> Job:
        return self._update_running(
            job_id,
            attempt,
            lambda job: replace(
                job,
                chunks_done=max(job.chunks_done, int(chunks_done)),
                progress=max(job.progress, min(99, max(0, int(progress)))),
                frames_done=max(job.frames_done, int(frames_done)),
                heartbeat_at=self._clock(),
            ),
        )

    def mark_resumed(self, job_id: str, chunk: int, *, attempt: int | None = None) -> Job:
        return self._update_running(
            job_id, attempt, lambda job: replace(job, resumed_from_chunk=int(chunk))
        )

    def heartbeat(self, job_id: str, *, attempt: int | None = None) -> None:
        self._update_running(job_id, attempt, lambda job: replace(job, heartbeat_at=self._clock()))

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
    ) -> Job:
        return self._transition(
            job_id,
            JobStatus.COMPLETED,
            attempt,
            progress=100,
            completed_at=self._now(),
            expires_at=expires_at,
            file_name=file_name,
            inference_time_s=float(inference_time_s),
            frames_done=num_frames_delivered,
            num_frames_delivered=num_frames_delivered,
            video_sha256=video_sha256,
            stats=stats,
        )

    def fail(self, job_id: str, code: str, message: str, *, attempt: int | None = None) -> Job:
        safe = message.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
        return self._transition(
            job_id,
            JobStatus.FAILED,
            attempt,
            completed_at=self._now(),
            error_code=code,
            error_message=safe,
        )

    def requeue(self, job_id: str, *, attempt: int | None = None) -> Job:
        with transaction(self.pool) as conn:
            job = fetch_job(conn, job_id, lock=True)
            check_attempt(job, attempt)
            job = back_to_queue(job)
            save_job(conn, job)
        return job

    # -- crash recovery -------------------------------------------------------------------

    def recover_stale(self, lease_s: float, max_attempts: int = 2) -> RecoveryReport:
        """Settle in_progress jobs whose heartbeat is older than `lease_s` (a lost worker)."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        requeued: builtins.list[str] = []
        failed: builtins.list[str] = []
        with transaction(self.pool) as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM helios_jobs WHERE status = 'in_progress' "
                "AND (heartbeat_at IS NULL OR heartbeat_at < %s) ORDER BY seq "
                "FOR UPDATE SKIP LOCKED",
                (self._clock() - lease_s,),
            ).fetchall()
            for job in [row_to_job(row) for row in rows]:
                save_job(conn, settle_lost(job, max_attempts, self._now()))
                (requeued if job.attempts < max_attempts else failed).append(job.id)
        return RecoveryReport(tuple(requeued), tuple(failed))

    def close(self) -> None:
        self.pool.close()
