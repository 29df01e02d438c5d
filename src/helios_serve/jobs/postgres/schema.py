"""The PostgreSQL schema of cluster mode and its migrations (`helios db upgrade`, or at start).

Our tables carry a `helios_` prefix so the database may be shared; procrastinate's own schema
(its `procrastinate_*` tables and functions) is installed by our first migration, in the same
transaction. Migrations run under an advisory lock: gateways and workers that start together
migrate once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from procrastinate.schema import SchemaManager
from psycopg.rows import tuple_row

from helios_serve.jobs.records import JobStoreError

MIGRATION_LOCK = 0x48454C494F53
"""pg_advisory_xact_lock key held while migrating ("HELIOS")."""

_V1 = """
CREATE TABLE helios_jobs (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed')),
    progress INTEGER NOT NULL CHECK (progress BETWEEN 0 AND 100),
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    expires_at BIGINT,
    spec TEXT NOT NULL,
    remixed_from_video_id TEXT,
    error_code TEXT,
    error_message TEXT,
    file_name TEXT,
    inference_time_s DOUBLE PRECISION,
    frames_done INTEGER NOT NULL,
    num_frames_delivered INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    heartbeat_at DOUBLE PRECISION,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    resumed_from_chunk INTEGER,
    video_sha256 TEXT,
    stats TEXT
);
CREATE INDEX helios_jobs_by_status ON helios_jobs (status, seq);
CREATE INDEX helios_jobs_by_created ON helios_jobs (created_at, seq);
CREATE INDEX helios_jobs_by_video_sha256 ON helios_jobs (video_sha256);
CREATE TABLE helios_deleted_jobs (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    deleted_at BIGINT NOT NULL
);
CREATE TABLE helios_idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX helios_idempotency_by_age ON helios_idempotency (created_at);
CREATE TABLE helios_workers (
    name TEXT PRIMARY KEY,
    model_info TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    running_job TEXT,
    session_url TEXT,
    max_sessions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE helios_sessions (
    session_id TEXT PRIMARY KEY,
    worker TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
"""


def _to_v1(conn: psycopg.Connection[Any]) -> None:
    """Job records, idempotency keys, the worker registry, where each real-time session runs,
    and procrastinate's queue."""
    conn.execute(_V1)
    conn.execute(SchemaManager.get_schema())


def _to_v2(conn: psycopg.Connection[Any]) -> None:
    """Each worker's session-port credential: the gateways read it here and present it on
    every relayed request (nobody else can reach the session port's signalling)."""
    conn.execute("ALTER TABLE helios_workers ADD COLUMN session_token TEXT")


MIGRATIONS: tuple[Callable[[psycopg.Connection[Any]], None], ...] = (_to_v1, _to_v2)
"""`MIGRATIONS[n]` takes the schema from version n to n + 1; append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema up to `SCHEMA_VERSION` in one transaction; returns the version found."""
    with conn.transaction():  # nested in the caller's transaction: a savepoint
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS helios_schema_version (version INTEGER NOT NULL)")
        cursor = conn.cursor(row_factory=tuple_row)
        row = cursor.execute("SELECT max(version) FROM helios_schema_version").fetchone()
        found = int(row[0] or 0) if row is not None else 0
        if found > SCHEMA_VERSION:
            raise JobStoreError(
                f"the jobs database has schema version {found}; this server knows up to "
                f"{SCHEMA_VERSION}. Upgrade helios-serve."
            )
        for version in range(found, SCHEMA_VERSION):
            MIGRATIONS[version](conn)
            conn.execute("INSERT INTO helios_schema_version (version) VALUES (%s)", (version + 1,))
    return found
