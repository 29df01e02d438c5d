"""The jobs database schema, its migrations, and the mapping between rows and `Job`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from helios_serve.core.settings import SamplingSettings
from helios_serve.errors import HeliosError
from helios_serve.jobs.models import GenerationSpec, Job, JobStatus


class JobStoreError(HeliosError):
    """The jobs database cannot be used (e.g. written by a newer version of this server)."""

    code = "job_store_error"


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


COLUMNS = (
    "id, model, status, progress, created_at, started_at, completed_at, expires_at, spec, "
    "remixed_from_video_id, error_code, error_message, file_name, inference_time_s, "
    "frames_done, num_frames_delivered, attempts, heartbeat_at, chunks_done, resumed_from_chunk, "
    "video_sha256, stats"
)
PLACEHOLDERS = ", ".join("?" * len(COLUMNS.split(",")))
ASSIGNMENTS = ", ".join(f"{name.strip()} = ?" for name in COLUMNS.split(","))

Row = tuple[object, ...]
RowLike = sqlite3.Row | Mapping[str, Any]
"""A row read by column name: sqlite3's, or PostgreSQL's (psycopg dict rows)."""


def job_to_row(job: Job) -> Row:
    """Values in `COLUMNS` order; the spec is stored as JSON text."""
    # ensure_ascii escapes lone surrogates, which sqlite3 could not encode as UTF-8.
    spec = json.dumps(job.spec.to_json(), ensure_ascii=True, allow_nan=False)
    return (
        job.id,
        job.model,
        job.status.value,
        job.progress,
        job.created_at,
        job.started_at,
        job.completed_at,
        job.expires_at,
        spec,
        job.remixed_from_video_id,
        job.error_code,
        job.error_message,
        job.file_name,
        job.inference_time_s,
        job.frames_done,
        job.num_frames_delivered,
        job.attempts,
        job.heartbeat_at,
        job.chunks_done,
        job.resumed_from_chunk,
        job.video_sha256,
        None if job.stats is None else json.dumps(job.stats, allow_nan=False),
    )


def row_to_job(row: RowLike) -> Job:
    """A row read by column name (sqlite3.Row, or a psycopg dict row)."""
    return Job(
        id=row["id"],
        model=row["model"],
        status=JobStatus(row["status"]),
        progress=row["progress"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        expires_at=row["expires_at"],
        spec=GenerationSpec.from_json(json.loads(row["spec"])),
        remixed_from_video_id=row["remixed_from_video_id"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        file_name=row["file_name"],
        inference_time_s=row["inference_time_s"],
        frames_done=row["frames_done"],
        num_frames_delivered=row["num_frames_delivered"],
        attempts=row["attempts"],
        heartbeat_at=row["heartbeat_at"],
        chunks_done=row["chunks_done"],
        resumed_from_chunk=row["resumed_from_chunk"],
        video_sha256=row["video_sha256"],
        stats=None if row["stats"] is None else json.loads(row["stats"]),
    )


CORRUPT_RECORD = "corrupt_record"
PLACEHOLDER_SPEC = GenerationSpec(
    prompt="",
    negative_prompt="",
    width=16,
    height=16,
    num_frames=1,
    fps=24,
    seed=0,
    settings=SamplingSettings(),
)
"""Stands in for a spec that cannot be read, so the row can still be listed and deleted."""


def is_readable(row: RowLike) -> bool:
    try:
        row_to_job(row)
    except Exception:  # a damaged row can fail in any way: none of them may stop the server
        return False
    return True


def quarantined(row: RowLike, now: int) -> Job:
    """A row that cannot be read, as a failed job with `corrupt_record` (nothing else kept)."""
    return Job(
        id=str(row["id"]),
        model=str(row["model"]),
        status=JobStatus.FAILED,
        progress=0,
        created_at=int(row["created_at"]),
        started_at=None,
        completed_at=now,
        expires_at=None,
        spec=PLACEHOLDER_SPEC,
        remixed_from_video_id=None,
        error_code=CORRUPT_RECORD,
        error_message="This video's record is damaged and cannot be read; delete it.",
        file_name=None,
        inference_time_s=None,
        frames_done=0,
        num_frames_delivered=0,
        attempts=0,
        heartbeat_at=None,
    )
