"""`JobStore`: jobs persisted in SQLite (WAL) so they survive restarts, clean or `kill -9`.

Durability: every method commits before it returns, with `synchronous=FULL` by default, so a job
acknowledged to a client survives a process kill *and* a power loss. Writes are a few per
second at most (creates, progress, heartbeats), so the fsync per commit costs nothing that
matters; `synchronous="NORMAL"` still survives `kill -9` (WAL) but may lose the last commits on
power loss.

Threading: one connection guarded by a lock; every method is synchronous and short, meant to be
called from asyncio through `asyncio.to_thread`. Several processes may open the same file: each
write takes SQLite's write lock up front (`BEGIN IMMEDIATE`), and waits up to `busy_timeout_s`.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from helios_serve.errors import HeliosError, InvalidInputError
from helios_serve.jobs.models import (
    WORKER_LOST,
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobStatus,
    StaleAttemptError,
    back_to_queue,
    check_attempt,
    check_transition,
    claimed,
    is_valid_job_id,
    settle_lost,
    taken_over,
)
from helios_serve.jobs.schema import (
    ASSIGNMENTS,
    COLUMNS,
    PLACEHOLDERS,
    JobStoreError,
    is_readable,
    job_to_row,
    migrate,
    quarantined,
    row_to_job,
)

__all__ = [
    "WORKER_LOST",
    "IdempotencyClaim",
    "IdempotencyConflictError",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JobStore",
    "JobStoreError",
    "Order",
    "QueueFullError",
    "RecoveryReport",
    "StaleAttemptError",
]

IDEMPOTENCY_TTL_S = 24 * 3600
"""How long an `Idempotency-Key` is remembered (Stripe's and OpenAI's 24 hours)."""

Order = Literal["asc", "desc"]

logger = logging.getLogger(__name__)


class QueueFullError(HeliosError):
    """The queue holds `max_queue` jobs already; nothing was stored."""

    code = "queue_full"

    def __init__(self, depth: int) -> None:
        super().__init__(f"the queue is full ({depth} jobs waiting); retry later")
        self.depth = depth


class IdempotencyConflictError(HeliosError):
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


class JobStore:
    """Durable job records and their lifecycle; all status changes obey `check_transition`."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly, never implicitly by sqlite3.
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.row_factory = sqlite3.Row
            self.journal_mode = str(self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if self.journal_mode != "wal":  # e.g. a network filesystem without shared memory
                logger.warning("jobs database %s runs in %s mode, not WAL", path, self.journal_mode)
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            migrate(self._conn)
        except BaseException:
            self._conn.close()
            raise
        self._closed = False

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its first statement."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: its statements all see the same snapshot."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")

    @staticmethod
    def _fetch(conn: sqlite3.Connection, job_id: str) -> Job:
        # Malformed ids never reach SQL: they cannot exist, whatever they contain.
        if not is_valid_job_id(job_id):
            raise JobNotFoundError(f"no video with id {job_id!r}", param="video_id")
        row = conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no video with id {job_id!r}", param="video_id")
        return JobStore._readable(row)

    @staticmethod
    def _readable(row: sqlite3.Row) -> Job:
        """The row's job, or a failed `corrupt_record` stand-in when it cannot be read."""
        if not is_readable(row):
            return quarantined(row, int(row["created_at"]))
        return row_to_job(row)

    @staticmethod
    def _position(conn: sqlite3.Connection, job_id: str) -> tuple[int, int] | None:
        """The job's sort key in `list`, (created_at, seq), also for a deleted one."""
        if not is_valid_job_id(job_id):
            return None
        for table in ("jobs", "deleted_jobs"):
            row = conn.execute(
                f"SELECT created_at, seq FROM {table} WHERE id = ?", (job_id,)
            ).fetchone()
            if row is not None:
                return int(row[0]), int(row[1])
        return None

    @staticmethod
    def _save(conn: sqlite3.Connection, job: Job) -> None:
        conn.execute(f"UPDATE jobs SET {ASSIGNMENTS} WHERE id = ?", (*job_to_row(job), job.id))

    def _transition(
        self, job_id: str, new: JobStatus, attempt: int | None = None, **changes: Any
    ) -> Job:
        with self._write() as conn:
            job = self._fetch(conn, job_id)
            check_attempt(job, attempt)
            check_transition(job.status, new)
            updated = replace(job, status=new, **changes)
            self._save(conn, updated)
        return updated

    def _now(self) -> int:
        return int(self._clock())

    # -- records ----------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        """Store a new queued job; it is durable when this returns."""
        if job.status is not JobStatus.QUEUED or job.attempts or job.progress:
            raise InvalidTransitionError("a new job must be queued, unclaimed and at 0 %")
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO jobs ({COLUMNS}) VALUES ({PLACEHOLDERS})", job_to_row(job)
                )
        except sqlite3.IntegrityError as exc:
            raise JobStoreError(f"a job with id {job.id} already exists") from exc
        except UnicodeEncodeError as exc:  # lone surrogates in a text field
            raise InvalidInputError(f"job {job.id} has text that is not valid UTF-8") from exc
        return job

    def admit(
        self, job: Job, *, max_queue: int | None = None, claim: IdempotencyClaim | None = None
    ) -> tuple[Job, bool]:
        """Store a new queued job unless `claim`'s key already made one; returns (job, created).

        One transaction: the queue limit cannot be overrun by concurrent creates, and two
        requests with the same key make one job. The same key with another fingerprint, or
        for a video since deleted, raises `IdempotencyConflictError`; a full queue
        `QueueFullError`.
        """
        if job.status is not JobStatus.QUEUED or job.attempts or job.progress:
            raise InvalidTransitionError("a new job must be queued, unclaimed and at 0 %")
        try:
            with self._write() as conn:
                if claim is not None:
                    existing = self._claimed(conn, claim)
                    if existing is not None:
                        return existing, False
                if max_queue is not None:
                    row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'queued'")
                    depth = int(row.fetchone()[0])
                    if depth >= max_queue:
                        raise QueueFullError(depth)
                conn.execute(
                    f"INSERT INTO jobs ({COLUMNS}) VALUES ({PLACEHOLDERS})", job_to_row(job)
                )
                if claim is not None:
                    conn.execute(
                        "INSERT INTO idempotency (key, fingerprint, job_id, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        (claim.key, claim.fingerprint, job.id, self._now()),
                    )
        except sqlite3.IntegrityError as exc:
            raise JobStoreError(f"a job with id {job.id} already exists") from exc
        except UnicodeEncodeError as exc:  # lone surrogates in a text field
            raise InvalidInputError(f"job {job.id} has text that is not valid UTF-8") from exc
        return job, True

    def _claimed(self, conn: sqlite3.Connection, claim: IdempotencyClaim) -> Job | None:
        """The job an unexpired key made, or None; raises on a key reused differently."""
        conn.execute(
            "DELETE FROM idempotency WHERE created_at < ?", (self._now() - IDEMPOTENCY_TTL_S,)
        )
        row = conn.execute(
            "SELECT fingerprint, job_id FROM idempotency WHERE key = ?", (claim.key,)
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

    def get(self, job_id: str) -> Job:
        with self._lock:
            return self._fetch(self._conn, job_id)

    def list(
        self, after: str | None = None, limit: int = 20, order: Order = "desc"
    ) -> tuple[builtins.list[Job], bool]:
        """One page by creation time (ties by insertion order) after the job `after`.

        `after` may name a deleted job (its place is remembered) or none at all (an empty
        page): a client paging through while deleting never gets an error.
        """
        if limit < 0:
            raise InvalidInputError(f"limit must not be negative, got {limit}", param="limit")
        if order not in ("asc", "desc"):
            raise InvalidInputError(f"order must be asc or desc, got {order!r}", param="order")
        op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        where = ""
        params: tuple[int, ...] = ()
        with self._read() as conn:
            if after is not None:
                position = self._position(conn, after)
                if position is None:
                    return [], False
                params = position
                where = f"WHERE (created_at, seq) {op} (?, ?)"
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM jobs {where} "
                f"ORDER BY created_at {direction}, seq {direction} LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        jobs = [self._readable(row) for row in rows]
        return jobs[:limit], len(jobs) > limit

    def delete(self, job_id: str) -> Job:
        """Remove the record whatever its status; returns it as it was."""
        with self._write() as conn:
            job = self._fetch(conn, job_id)
            row = conn.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO deleted_jobs (id, created_at, seq, deleted_at) "
                "VALUES (?, ?, ?, ?)",
                (job_id, job.created_at, int(row[0]), self._now()),
            )
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return job

    def count_by_status(self) -> dict[JobStatus, int]:
        with self._lock:
            rows = self._conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
            found = {JobStatus(status): int(n) for status, n in rows}
        return {status: found.get(status, 0) for status in JobStatus}

    def queue_depth(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT count(*) FROM jobs WHERE status = 'queued'")
            return int(row.fetchone()[0])

    # -- the worker's side ----------------------------------------------------------------

    def claim_next(self) -> Job | None:
        """Atomically move the oldest queued job to in_progress (attempts + 1) and return it."""
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            if not is_readable(row):  # quarantine it, so one bad row never stops the queue
                self._save(conn, quarantined(row, self._now()))
                logger.error("job %s has an unreadable record: quarantined", row["id"])
                return None
            job = claimed(row_to_job(row), self._clock())
            self._save(conn, job)
        return job

    def take(self, job_id: str, max_attempts: int) -> Job | None:
        """Claim `job_id` for the worker a queue handed it to (see `models.taken_over`):
        the job in_progress at a new attempt, failed once out of attempts, or None when it is
        finished or deleted."""
        with self._write() as conn:
            try:
                job = self._fetch(conn, job_id)
            except JobNotFoundError:
                return None
            taken = taken_over(job, max_attempts, self._clock())
            if taken is not None:
                self._save(conn, taken)
        return taken

    def update_progress(
        self, job_id: str, progress: int, frames_done: int, *, attempt: int | None = None
    ) -> Job:
        """Raise progress and frames written (never lowers either); refreshes the heartbeat.

        `attempt` (here and in every write a worker makes) fences the write: it is refused with
        `StaleAttemptError` once another attempt has taken the job over."""
        with self._write() as conn:
            job = self._require_running(conn, job_id, attempt)
            updated = replace(
                job,
                progress=max(job.progress, min(100, max(0, int(progress)))),
                frames_done=max(job.frames_done, int(frames_done)),
                heartbeat_at=self._clock(),
            )
            self._save(conn, updated)
        return updated

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
        with self._write() as conn:
            job = self._require_running(conn, job_id, attempt)
            updated = replace(
                job,
                chunks_done=max(job.chunks_done, int(chunks_done)),
                progress=max(job.progress, min(99, max(0, int(progress)))),
                frames_done=max(job.frames_done, int(frames_done)),
                heartbeat_at=self._clock(),
            )
            self._save(conn, updated)
        return updated

    def mark_resumed(self, job_id: str, chunk: int, *, attempt: int | None = None) -> Job:
        """This attempt continues an interrupted one at `chunk`."""
        with self._write() as conn:
            job = self._require_running(conn, job_id, attempt)
            job = replace(job, resumed_from_chunk=int(chunk))
            self._save(conn, job)
        return job

    def heartbeat(self, job_id: str, *, attempt: int | None = None) -> None:
        """Record that the worker running `job_id` is alive."""
        with self._write() as conn:
            job = self._require_running(conn, job_id, attempt)
            self._save(conn, replace(job, heartbeat_at=self._clock()))

    def _require_running(
        self, conn: sqlite3.Connection, job_id: str, attempt: int | None = None
    ) -> Job:
        job = self._fetch(conn, job_id)
        check_attempt(job, attempt)
        if job.status is not JobStatus.IN_PROGRESS:
            raise InvalidTransitionError(f"job {job_id} is {job.status.value}, not in_progress")
        return job

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

    def find_by_video_digest(self, sha256: str) -> Job | None:
        """The completed job whose MP4 has this SHA-256, if any (the oldest if several)."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE video_sha256 = ? AND status = 'completed' "
                "ORDER BY seq LIMIT 1",
                (sha256,),
            ).fetchone()
        return None if row is None else row_to_job(row)

    def fail(self, job_id: str, code: str, message: str, *, attempt: int | None = None) -> Job:
        # Error text often quotes inputs or exceptions; make it storable whatever it holds.
        safe = message.encode("utf-8", "replace").decode("utf-8")
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
            job = self._fetch(conn, job_id)
            check_attempt(job, attempt)
            job = back_to_queue(job)
            self._save(conn, job)
        return job

    # -- crash recovery ---------------------------------------------------------------------

    def recover_after_restart(self, max_attempts: int = 2) -> RecoveryReport:
        """At startup, before any worker runs: settle every job left in_progress."""
        return self._recover(max_attempts, stale_before=None)

    def recover_stale(self, lease_s: float, max_attempts: int = 2) -> RecoveryReport:
        """Settle in_progress jobs whose heartbeat is older than `lease_s` (a lost worker)."""
        return self._recover(max_attempts, stale_before=self._clock() - lease_s)

    def _recover(self, max_attempts: int, stale_before: float | None) -> RecoveryReport:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        query = f"SELECT {COLUMNS} FROM jobs WHERE status = 'in_progress'"
        params: tuple[float, ...] = ()
        if stale_before is not None:
            query += " AND (heartbeat_at IS NULL OR heartbeat_at < ?)"
            params = (stale_before,)
        requeued: builtins.list[str] = []
        failed: builtins.list[str] = []
        with self._write() as conn:
            rows = conn.execute(query + " ORDER BY seq", params).fetchall()
            for job in [self._readable(row) for row in rows if is_readable(row)]:
                self._save(conn, settle_lost(job, max_attempts, self._now()))
                (requeued if job.attempts < max_attempts else failed).append(job.id)
        return RecoveryReport(tuple(requeued), tuple(failed))

    # -- maintenance ------------------------------------------------------------------------

    def quarantine_unreadable(self) -> builtins.list[str]:
        """Mark every row that cannot be read failed (`corrupt_record`); returns their ids."""
        found: builtins.list[str] = []
        with self._write() as conn:
            for row in conn.execute(f"SELECT {COLUMNS} FROM jobs").fetchall():
                if not is_readable(row):
                    logger.error(
                        "job %s has an unreadable record (spec %r): quarantined as failed",
                        row["id"],
                        str(row["spec"])[:500],
                    )
                    self._save(conn, quarantined(row, self._now()))
                    found.append(str(row["id"]))
        return found

    def integrity_check(self) -> str:
        """`"ok"`, or SQLite's description of what is damaged."""
        with self._lock:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(row[0]) for row in rows)

    def close(self) -> None:
        """Close the connection (idempotent); the store is unusable afterwards."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
