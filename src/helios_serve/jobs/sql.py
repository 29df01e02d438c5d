"""The job records as SQL rows, read and written: what both adapters of `JobRecords` share
below the lifecycle (`jobs.lifecycle`).

`SqlTables` holds the plumbing (fetch, save, insert, a transition, a fenced change) and the
reads (one job, a page, counts); an adapter (`jobs.sqlite.store`, `jobs.postgres.store`)
supplies how a transaction opens and what it locks (`_write`, `_read`), its `Dialect` (table
names, parameter marker, row locks) and which driver errors mean a duplicate id or text it
cannot store. The row mapping is `jobs.rows`'.
"""

from __future__ import annotations

import builtins
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, ClassVar, Self

from helios_serve.errors import InvalidInputError
from helios_serve.jobs.models import (
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobStatus,
    check_attempt,
    check_transition,
    is_valid_job_id,
)
from helios_serve.jobs.records import JobStoreError, Order, RecordEvents
from helios_serve.jobs.rows import (
    ASSIGNMENTS,
    COLUMNS,
    PLACEHOLDERS,
    is_readable,
    job_to_row,
    quarantined,
    row_to_job,
)

Conn = Any
"""A DB-API connection inside a transaction (sqlite3's or psycopg's): `execute(sql, params)`
returning a cursor whose rows are read by column name."""


@dataclass(frozen=True)
class Dialect:
    """What differs in the SQL of two adapters: names, the parameter marker, row locks."""

    jobs: str
    deleted_jobs: str
    idempotency: str
    marker: str = "?"
    lock_row: str = ""
    """Appended to a read that a write follows (PostgreSQL: ` FOR UPDATE`)."""
    skip_locked: str = ""
    """Appended to claims, so two claimers never wait on each other's rows."""

    def sql(self, text: str) -> str:
        """`text` with `{jobs}`, `{deleted}`, `{idem}`, `{cols}` filled and `?` markers."""
        filled = text.format(
            jobs=self.jobs, deleted=self.deleted_jobs, idem=self.idempotency, cols=COLUMNS
        )
        return filled.replace("?", self.marker)


class SqlTables(ABC):
    """Job records in SQL tables: the plumbing and the reads every adapter shares."""

    dialect: ClassVar[Dialect]
    duplicate_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """Driver errors an insert raises for an id that exists."""
    unstorable_errors: ClassVar[tuple[type[Exception], ...]] = (UnicodeEncodeError,)
    """Driver errors for text the database cannot hold (lone surrogates, NUL bytes)."""

    def __init__(
        self, clock: Callable[[], float] = time.time, events: RecordEvents | None = None
    ) -> None:
        self._clock = clock
        self._events = events

    # -- what an adapter supplies -----------------------------------------------------------

    @abstractmethod
    def _write(self) -> AbstractContextManager[Conn]:
        """One write transaction, committed when the block ends without an error."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Conn]:
        """One read transaction: its statements all see the same snapshot."""

    @abstractmethod
    def close(self) -> None: ...

    # -- plumbing -----------------------------------------------------------------------------

    def _q(self, text: str) -> str:
        return self.dialect.sql(text)

    def _now(self) -> int:
        return int(self._clock())

    def _stamp(self, conn: Conn) -> float:  # noqa: ARG002 (the database's clock needs it)
        """The time leases are stamped and judged by, inside `conn`'s transaction: this
        store's clock here (one host: SQLite); the database's own in cluster mode, where a
        host's wall clock must never decide another host's lease."""
        return self._clock()

    def _fetch(self, conn: Conn, job_id: str, *, lock: bool = False) -> Job:
        """The job (locked for this transaction with `lock`); malformed ids never reach SQL:
        they cannot exist, whatever they contain."""
        if not is_valid_job_id(job_id):
            raise JobNotFoundError(f"no video with id {job_id!r}", param="video_id")
        suffix = self.dialect.lock_row if lock else ""
        query = self._q("SELECT {cols} FROM {jobs} WHERE id = ?") + suffix
        row = conn.execute(query, (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no video with id {job_id!r}", param="video_id")
        return self._readable(row)

    @staticmethod
    def _readable(row: Any) -> Job:
        """The row's job, or a failed `corrupt_record` stand-in when it cannot be read."""
        if not is_readable(row):
            return quarantined(row, int(row["created_at"]))
        return row_to_job(row)

    def _save(self, conn: Conn, job: Job) -> None:
        query = self._q("UPDATE {jobs} SET " + ASSIGNMENTS + " WHERE id = ?")
        conn.execute(query, (*job_to_row(job), job.id))

    def _insert(self, conn: Conn, job: Job) -> None:
        try:
            conn.execute(
                self._q("INSERT INTO {jobs} ({cols}) VALUES (" + PLACEHOLDERS + ")"),
                job_to_row(job),
            )
        except self.duplicate_errors as exc:
            raise JobStoreError(f"a job with id {job.id} already exists") from exc
        except self.unstorable_errors as exc:
            raise InvalidInputError(f"job {job.id} has text that cannot be stored") from exc

    def _transition(
        self, job_id: str, new: JobStatus, attempt: int | None = None, **changes: Any
    ) -> Job:
        with self._write() as conn:
            job = self._fetch(conn, job_id, lock=True)
            check_attempt(job, attempt)
            check_transition(job.status, new)
            updated = replace(job, status=new, **changes)
            self._save(conn, updated)
        return updated

    def _update_running(
        self, job_id: str, attempt: int | None, change: Callable[[Job, float], Job]
    ) -> Job:
        """`change(job, now)` applied to a job this attempt runs (`StaleAttemptError` for an
        old one); `now` is `_stamp`'s."""
        with self._write() as conn:
            job = self._fetch(conn, job_id, lock=True)
            check_attempt(job, attempt)
            if job.status is not JobStatus.IN_PROGRESS:
                raise InvalidTransitionError(f"job {job_id} is {job.status.value}, not in_progress")
            updated = change(job, self._stamp(conn))
            self._save(conn, updated)
        return updated

    # -- reads ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        with self._read() as conn:
            return self._fetch(conn, job_id)

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
                self._q(
                    f"SELECT {{cols}} FROM {{jobs}} {where} "
                    f"ORDER BY created_at {direction}, seq {direction} LIMIT ?"
                ),
                (*params, limit + 1),
            ).fetchall()
        jobs = [self._readable(row) for row in rows]
        return jobs[:limit], len(jobs) > limit

    def _position(self, conn: Conn, job_id: str) -> tuple[int, int] | None:
        """The job's sort key in `list`, (created_at, seq), also for a deleted one."""
        if not is_valid_job_id(job_id):
            return None
        for table in ("{jobs}", "{deleted}"):
            row = conn.execute(
                self._q(f"SELECT created_at, seq FROM {table} WHERE id = ?"), (job_id,)
            ).fetchone()
            if row is not None:
                return int(row["created_at"]), int(row["seq"])
        return None

    def count_by_status(self) -> dict[JobStatus, int]:
        with self._read() as conn:
            rows = conn.execute(self._q("SELECT status, count(*) AS n FROM {jobs} GROUP BY status"))
            found = {JobStatus(row["status"]): int(row["n"]) for row in rows.fetchall()}
        return {status: found.get(status, 0) for status in JobStatus}

    def queue_depth(self) -> int:
        with self._read() as conn:
            return self._depth(conn)

    def _depth(self, conn: Conn) -> int:
        row = conn.execute(
            self._q("SELECT count(*) AS n FROM {jobs} WHERE status = 'queued'")
        ).fetchone()
        return 0 if row is None else int(row["n"])

    def count_resumed(self) -> int:
        """Jobs whose latest attempt continued an interrupted one (for /metrics)."""
        with self._read() as conn:
            row = conn.execute(
                self._q("SELECT count(*) AS n FROM {jobs} WHERE resumed_from_chunk IS NOT NULL")
            ).fetchone()
        return 0 if row is None else int(row["n"])

    def find_by_video_digest(self, sha256: str) -> Job | None:
        """The completed job whose MP4 has this SHA-256, if any (the oldest if several)."""
        with self._read() as conn:
            row = conn.execute(
                self._q(
                    "SELECT {cols} FROM {jobs} WHERE video_sha256 = ? AND status = 'completed' "
                    "ORDER BY seq LIMIT 1"
                ),
                (sha256,),
            ).fetchone()
        return None if row is None else row_to_job(row)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
