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
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from helios_serve.errors import InsufficientStorageError
from helios_serve.jobs.lifecycle import SqlJobRecords
from helios_serve.jobs.records import RecordEvents, StoreUnavailableError
from helios_serve.jobs.rows import COLUMNS, is_readable, quarantined
from helios_serve.jobs.sql import Dialect
from helios_serve.jobs.sqlite.schema import migrate

logger = logging.getLogger(__name__)


class JobStore(SqlJobRecords):
    """`JobRecords` on SQLite: one connection, one writer at a time (`BEGIN IMMEDIATE`)."""

    dialect = Dialect(jobs="jobs", deleted_jobs="deleted_jobs", idempotency="idempotency")
    duplicate_errors = (sqlite3.IntegrityError,)

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        events: RecordEvents | None = None,
    ) -> None:
        super().__init__(clock, events)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = path
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

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its first statement."""
        with self._lock, _domain_errors():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):  # the first error is the one to report
                        conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: its statements all see the same snapshot."""
        with self._lock, _domain_errors():
            conn = self._conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")

    # -- maintenance ----------------------------------------------------------------------------

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


@contextmanager
def _domain_errors() -> Iterator[None]:
    """SQLite's operational failures as domain errors: a full disk (507, the job that hit it
    fails as `insufficient_storage`), a lock held past the busy timeout or an I/O error (503,
    retry). Constraint errors (a duplicate id) stay what they are."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "full" in str(exc):
            raise InsufficientStorageError(
                "The server's disk is full; nothing was stored. Retry later."
            ) from exc
        raise StoreUnavailableError("job store") from exc
