"""Rows of `helios_jobs` ↔ `Job`, inside a caller's transaction (for `PostgresJobStore`)."""

from __future__ import annotations

from typing import Any

import psycopg

from helios_serve.cluster.pg import Conn
from helios_serve.errors import InvalidInputError
from helios_serve.jobs.models import Job, JobNotFoundError, is_valid_job_id
from helios_serve.jobs.schema import (
    COLUMNS,
    JobStoreError,
    is_readable,
    job_to_row,
    quarantined,
    row_to_job,
)

_NAMES = [name.strip() for name in COLUMNS.split(",")]
_PLACEHOLDERS = ", ".join(["%s"] * len(_NAMES))
_ASSIGNMENTS = ", ".join(f"{name} = %s" for name in _NAMES)


def fetch_job(conn: Conn, job_id: str, *, lock: bool = False) -> Job:
    """The job (row-locked with `lock`); malformed ids never reach SQL."""
    if not is_valid_job_id(job_id):
        raise JobNotFoundError(f"no video with id {job_id!r}", param="video_id")
    suffix = " FOR UPDATE" if lock else ""
    row = conn.execute(
        f"SELECT {COLUMNS} FROM helios_jobs WHERE id = %s{suffix}", (job_id,)
    ).fetchone()
    if row is None:
        raise JobNotFoundError(f"no video with id {job_id!r}", param="video_id")
    return readable(row)


def readable(row: dict[str, Any]) -> Job:
    """The row's job, or a failed `corrupt_record` stand-in when it cannot be read."""
    if not is_readable(row):
        return quarantined(row, int(row["created_at"]))
    return row_to_job(row)


def save_job(conn: Conn, job: Job) -> None:
    conn.execute(f"UPDATE helios_jobs SET {_ASSIGNMENTS} WHERE id = %s", (*job_to_row(job), job.id))


def insert_job(conn: Conn, job: Job) -> None:
    try:
        conn.execute(
            f"INSERT INTO helios_jobs ({COLUMNS}) VALUES ({_PLACEHOLDERS})", job_to_row(job)
        )
    except psycopg.errors.UniqueViolation as exc:
        raise JobStoreError(f"a job with id {job.id} already exists") from exc
    except (UnicodeEncodeError, psycopg.DataError) as exc:  # lone surrogates, NUL bytes
        raise InvalidInputError(f"job {job.id} has text that cannot be stored") from exc
