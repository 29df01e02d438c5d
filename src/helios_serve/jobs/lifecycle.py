"""The job lifecycle written once: admission (the queue limit and idempotency keys), deletion,
the worker's fenced writes, completion, failure and recovery after a lost worker.

`SqlJobRecords` is `JobRecords` for both adapters (`jobs.sqlite.store`, `jobs.postgres.store`):
every rule is here, on `jobs.sql.SqlTables`' rows; an adapter adds only its transactions, its
locks (`_serialise_admission` too) and its dialect. The pure transitions are `jobs.models`'.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import replace
from typing import Any

from helios_serve.jobs.models import (
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobStatus,
    back_to_queue,
    check_attempt,
    claimed,
    holds_lease,
    settle_lost,
    taken_over,
)
from helios_serve.jobs.records import (
    IDEMPOTENCY_TTL_S,
    IdempotencyClaim,
    IdempotencyConflictError,
    QueueFullError,
    RecoveryReport,
)
from helios_serve.jobs.rows import is_readable, quarantined, row_to_job
from helios_serve.jobs.sql import Conn, SqlTables

logger = logging.getLogger(__name__)


class SqlJobRecords(SqlTables):
    """Durable job records and their lifecycle; every status change obeys `check_transition`
    and every worker write is fenced by its attempt."""

    def _serialise_admission(self, conn: Conn) -> None:
        """Make admissions one serial decision (a no-op where writes are serial already)."""
        del conn

    # -- records --------------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        """Store a new queued job; it is durable when this returns."""
        return self.admit(job)[0]

    def admit(
        self, job: Job, *, max_queue: int | None = None, claim: IdempotencyClaim | None = None
    ) -> tuple[Job, bool]:
        """Store a new queued job unless `claim`'s key already made one; returns (job, created).

        One decision: the queue limit cannot be overrun by concurrent creates, and two
        requests with the same key make one job. The same key with another fingerprint, or
        for a video since deleted, raises `IdempotencyConflictError`; a full queue
        `QueueFullError`.
        """
        if job.status is not JobStatus.QUEUED or job.attempts or job.progress:
            raise InvalidTransitionError("a new job must be queued, unclaimed and at 0 %")
        with self._write() as conn:
            self._serialise_admission(conn)
            if claim is not None and (existing := self._claimed(conn, claim)) is not None:
                return existing, False
            if max_queue is not None:
                depth = self._depth(conn)
                if depth >= max_queue:
                    raise QueueFullError(depth)
            self._insert(conn, job)
            if claim is not None:
                conn.execute(
                    self._q(
                        "INSERT INTO {idem} (key, fingerprint, job_id, created_at) "
                        "VALUES (?, ?, ?, ?)"
                    ),
                    (claim.key, claim.fingerprint, job.id, self._now()),
                )
        return job, True

    def _claimed(self, conn: Conn, claim: IdempotencyClaim) -> Job | None:
        """The job an unexpired key made, or None; raises on a key reused differently."""
        conn.execute(
            self._q("DELETE FROM {idem} WHERE created_at < ?"), (self._now() - IDEMPOTENCY_TTL_S,)
        )
        row = conn.execute(
            self._q("SELECT fingerprint, job_id FROM {idem} WHERE key = ?"), (claim.key,)
        ).fetchone()
        if row is None:
            return None
        if row["fingerprint"] != claim.fingerprint:
            raise IdempotencyConflictError(
                "this Idempotency-Key was already used with a different request",
                param="Idempotency-Key",
            )
        try:
            return self._fetch(conn, row["job_id"])
        except JobNotFoundError:
            raise IdempotencyConflictError(
                f"this Idempotency-Key made {row['job_id']}, which has been deleted",
                param="Idempotency-Key",
            ) from None

    def find_claimed(self, claim: IdempotencyClaim) -> Job | None:
        """`admit`'s key check on its own, to answer a retry before doing any work."""
        with self._write() as conn:
            return self._claimed(conn, claim)

    def delete(self, job_id: str) -> Job:
        """Remove the record whatever its status (its place in the list is remembered);
        returns it as it was."""
        with self._write() as conn:
            job = self._fetch(conn, job_id, lock=True)
            conn.execute(
                self._q(
                    "INSERT INTO {deleted} (id, created_at, seq, deleted_at) "
                    "SELECT id, created_at, seq, ? FROM {jobs} WHERE id = ? "
                    "ON CONFLICT (id) DO NOTHING"
                ),
                (self._now(), job_id),
            )
            conn.execute(self._q("DELETE FROM {jobs} WHERE id = ?"), (job_id,))
        return job

    # -- the worker's side ----------------------------------------------------------------------

    def claim_next(self) -> Job | None:
        """Atomically move the oldest queued job to in_progress (attempts + 1) and return it."""
        with self._write() as conn:
            row = conn.execute(
                self._q("SELECT {cols} FROM {jobs} WHERE status = 'queued' ORDER BY seq LIMIT 1")
                + self.dialect.skip_locked
            ).fetchone()
            if row is None:
                return None
            if not is_readable(row):  # quarantine it, so one bad row never stops the queue
                self._save(conn, quarantined(row, self._now()))
                logger.error("job %s has an unreadable record: quarantined", row["id"])
                return None
            job = claimed(row_to_job(row), self._stamp(conn))
            self._save(conn, job)
        if self._events is not None:
            self._events.claimed(job)
        return job

    def take(self, job_id: str, max_attempts: int, *, lease_s: float | None = None) -> Job | None:
        """Claim `job_id` for the worker a queue handed it to (see `models.taken_over`):
        the job in_progress at a new attempt, failed once out of attempts, or None when it is
        finished or deleted, or (with `lease_s`) while its running attempt still reports in
        (a second queue task for a job already running, not a lost worker)."""
        with self._write() as conn:
            try:
                job = self._fetch(conn, job_id, lock=True)
            except JobNotFoundError:
                return None
            now = self._stamp(conn)
            if lease_s is not None and holds_lease(job, now, lease_s):
                return None
            taken = taken_over(job, max_attempts, now)
            if taken is not None:
                self._save(conn, taken)
        if taken is not None and self._events is not None:
            self._events.claimed(taken)
        return taken

    def update_progress(
        self, job_id: str, progress: int, frames_done: int, *, attempt: int | None = None
    ) -> Job:
        """Raise progress and frames written (never lowers either); refreshes the heartbeat.

        `attempt` (here and in every write a worker makes) fences the write: it is refused with
        `StaleAttemptError` once another attempt has taken the job over."""
        return self._update_running(
            job_id,
            attempt,
            lambda job, now: replace(
                job,
                progress=max(job.progress, min(100, max(0, int(progress)))),
                frames_done=max(job.frames_done, int(frames_done)),
                heartbeat_at=now,
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
        """A chunk's segment and stream state are saved: the next attempt starts after it."""
        return self._update_running(
            job_id,
            attempt,
            lambda job, now: replace(
                job,
                chunks_done=max(job.chunks_done, int(chunks_done)),
                progress=max(job.progress, min(99, max(0, int(progress)))),
                frames_done=max(job.frames_done, int(frames_done)),
                heartbeat_at=now,
            ),
        )

    def mark_resumed(self, job_id: str, chunk: int, *, attempt: int | None = None) -> Job:
        """This attempt continues an interrupted one at `chunk`."""
        return self._update_running(
            job_id, attempt, lambda job, _: replace(job, resumed_from_chunk=int(chunk))
        )

    def heartbeat(self, job_id: str, *, attempt: int | None = None) -> None:
        """Record that the worker running `job_id` is alive."""
        self._update_running(job_id, attempt, lambda job, now: replace(job, heartbeat_at=now))

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
        done = self._transition(
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
        if self._events is not None:
            self._events.completed(done)
        return done

    def fail(self, job_id: str, code: str, message: str, *, attempt: int | None = None) -> Job:
        # Error text often quotes inputs or exceptions; make it storable whatever it holds.
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
        """Put an in_progress job back in the queue; it keeps its place and attempt count."""
        with self._write() as conn:
            job = self._fetch(conn, job_id, lock=True)
            check_attempt(job, attempt)
            job = back_to_queue(job)
            self._save(conn, job)
        return job

    # -- crash recovery -------------------------------------------------------------------------

    def recover_after_restart(self, max_attempts: int = 2) -> RecoveryReport:
        """At startup, before any worker runs: settle every job left in_progress."""
        return self._recover(max_attempts, lease_s=None)

    def recover_stale(self, lease_s: float, max_attempts: int = 2) -> RecoveryReport:
        """Settle in_progress jobs whose heartbeat is older than `lease_s` (a lost worker)."""
        return self._recover(max_attempts, lease_s=lease_s)

    def _recover(self, max_attempts: int, lease_s: float | None) -> RecoveryReport:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        query = "SELECT {cols} FROM {jobs} WHERE status = 'in_progress'"
        requeued: builtins.list[str] = []
        failed: builtins.list[str] = []
        with self._write() as conn:
            params: tuple[float, ...] = ()
            if lease_s is not None:  # judged on the clock the heartbeats were stamped with
                query += " AND (heartbeat_at IS NULL OR heartbeat_at < ?)"
                params = (self._stamp(conn) - lease_s,)
            rows = conn.execute(
                self._q(query + " ORDER BY seq") + self.dialect.skip_locked, params
            ).fetchall()
            for job in [row_to_job(row) for row in rows if is_readable(row)]:
                self._save(conn, settle_lost(job, max_attempts, self._now()))
                (requeued if job.attempts < max_attempts else failed).append(job.id)
        return RecoveryReport(tuple(requeued), tuple(failed))
