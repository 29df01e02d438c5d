"""The SQLite schema of `helios serve`'s jobs database and its migrations (the mapping between
rows and `Job` is both adapters', in `jobs.rows`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from helios_serve.jobs.records import JobStoreError

_V1 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed')),
    progress INTEGER NOT NULL CHECK (progress BETWEEN 0 AND 100),
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    expires_at INTEGER,
    spec TEXT NOT NULL,
    remixed_from_video_id TEXT,
    error_code TEXT,
    error_message TEXT,
    file_name TEXT,
    inference_time_s REAL,
    frames_done INTEGER NOT NULL,
    num_frames_delivered INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    heartbeat_at REAL
);
CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_created ON jobs (created_at, seq);
"""

Migration = Callable[[sqlite3.Connection], None]


def _to_v1(conn: sqlite3.Connection) -> None:
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)


_V2 = """
ALTER TABLE jobs ADD COLUMN chunks_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN resumed_from_chunk INTEGER;
ALTER TABLE jobs ADD COLUMN video_sha256 TEXT;
CREATE INDEX jobs_by_video_sha256 ON jobs (video_sha256);
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);
"""


def _to_v2(conn: sqlite3.Connection) -> None:
    """Chunk checkpoints (how far a job got, where it resumed), the digest of each finished
    MP4 (an uploaded copy of one is recognised) and idempotency keys."""
    for statement in _V2.split(";"):
        if statement.strip():
            conn.execute(statement)


_V3 = """
CREATE TABLE deleted_jobs (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL
);
ALTER TABLE jobs ADD COLUMN stats TEXT;
"""


def _to_v3(conn: sqlite3.Connection) -> None:
    """Where deleted jobs stood in the list (a page cursor may name one) and per-job stats."""
    for statement in _V3.split(";"):
        if statement.strip():
            conn.execute(statement)


MIGRATIONS: tuple[Migration, ...] = (_to_v1, _to_v2, _to_v3)
"""`MIGRATIONS[n]` takes the schema from version n to n + 1; append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to `SCHEMA_VERSION` in one transaction; returns the version found.

    `conn` must be in autocommit mode (isolation_level=None) and not in a transaction.
    """
    conn.execute("BEGIN IMMEDIATE")  # one process migrates; a second waits, then sees it done
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        found = int(row[0] or 0)
        if found > SCHEMA_VERSION:
            # Refuse rather than guess: an older server could corrupt a newer layout.
            raise JobStoreError(
                f"the jobs database has schema version {found}; this server knows up to "
                f"{SCHEMA_VERSION}. Upgrade helios-serve or use another data directory."
            )
        for version in range(found, SCHEMA_VERSION):
            MIGRATIONS[version](conn)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
