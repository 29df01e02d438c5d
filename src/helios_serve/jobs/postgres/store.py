"""`PostgresJobStore`: the `JobRecords` of cluster mode, shared by every gateway and worker.

The lifecycle is `jobs.lifecycle`'s, the row mapping `jobs.rows`'; PostgreSQL brings the
locking: row locks (`FOR UPDATE`) instead of SQLite's one writer, `SKIP LOCKED` claims, and an
advisory lock that makes admission (queue limit plus idempotency key) one serial decision
across gateways. Leases are stamped and judged on the database's clock (`now()`), so a host
whose wall clock is off cannot lose its own jobs or take over another's. Connection errors
become `StoreUnavailableError` (`jobs.postgres.pool`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import psycopg

from helios_serve.jobs.lifecycle import SqlJobRecords
from helios_serve.jobs.postgres.pool import open_pool, transaction
from helios_serve.jobs.postgres.schema import migrate
from helios_serve.jobs.records import RecordEvents
from helios_serve.jobs.sql import Conn, Dialect

DB_NOW = "extract(epoch FROM now())::float8"
"""The database's clock (the transaction's start) in epoch seconds, as SQL."""
ADMIT_LOCK = 0x48454C494F54
"""pg_advisory_xact_lock key that serialises admissions (queue limit + idempotency keys)."""


class PostgresJobStore(SqlJobRecords):
    """Durable job records in PostgreSQL; every method is one short transaction."""

    dialect = Dialect(
        jobs="helios_jobs",
        deleted_jobs="helios_deleted_jobs",
        idempotency="helios_idempotency",
        marker="%s",
        lock_row=" FOR UPDATE",
        skip_locked=" FOR UPDATE SKIP LOCKED",
    )
    duplicate_errors = (psycopg.errors.UniqueViolation,)
    unstorable_errors = (UnicodeEncodeError, psycopg.DataError)

    def __init__(
        self,
        dsn: str,
        *,
        clock: Callable[[], float] = time.time,
        pool_size: int = 4,
        events: RecordEvents | None = None,
    ) -> None:
        super().__init__(clock, events)
        self.pool = open_pool(dsn, max_size=pool_size)
        try:
            with transaction(self.pool) as conn:  # an unreachable server: one clear error
                migrate(conn)
        except BaseException:
            self.pool.close()
            raise

    def _write(self) -> AbstractContextManager[Conn]:
        return transaction(self.pool)

    def _read(self) -> AbstractContextManager[Conn]:
        return transaction(self.pool)

    def _stamp(self, conn: Conn) -> float:
        return db_now(conn)

    def _serialise_admission(self, conn: Conn) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADMIT_LOCK,))

    def close(self) -> None:
        self.pool.close()


def db_now(conn: Conn) -> float:
    """The database's clock inside `conn`'s transaction: the one every lease is judged on."""
    row = conn.execute(f"SELECT {DB_NOW} AS now").fetchone()
    return float(row["now"])
