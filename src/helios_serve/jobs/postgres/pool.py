"""A PostgreSQL connection pool and the one way this package uses it: short transactions whose
connection errors become `StoreUnavailableError` (a 503 at the HTTP edge, never a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from helios_serve.jobs.records import StoreUnavailableError

Conn = psycopg.Connection[dict[str, Any]]


START_WAIT_S = 15.0
"""How long a starting process waits for its first connection (a busy or starting database
may take seconds); a request later waits only the pool's `timeout_s`."""


def open_pool(dsn: str, *, max_size: int = 4, timeout_s: float = 2.0) -> ConnectionPool[Conn]:
    """A pool that checks each connection before lending it: after a database restart, broken
    connections are replaced instead of failing the next request. Returns once one connection
    is open; `StoreUnavailableError` when none opens within `START_WAIT_S`."""
    pool: ConnectionPool[Conn] = ConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        timeout=timeout_s,
        kwargs={"row_factory": dict_row, "autocommit": True, "connect_timeout": 5},
        check=ConnectionPool.check_connection,
        open=False,
        name="helios",
    )
    try:
        pool.open(wait=True, timeout=START_WAIT_S)
    except PoolTimeout as exc:
        pool.close()
        raise StoreUnavailableError("job store") from exc
    return pool


@contextmanager
def transaction(pool: ConnectionPool[Conn]) -> Iterator[Conn]:
    """One transaction on a pooled connection; committed when the block ends without error."""
    try:
        with pool.connection() as conn, conn.transaction():
            yield conn
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise StoreUnavailableError("job store") from exc
