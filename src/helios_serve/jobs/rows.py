"""The mapping between rows of the jobs table and `Job`, the same for both adapters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from helios_serve.core.settings import SamplingSettings
from helios_serve.jobs.models import GenerationSpec, Job, JobStatus

COLUMNS = (
    "id, model, status, progress, created_at, started_at, completed_at, expires_at, spec, "
    "remixed_from_video_id, error_code, error_message, file_name, inference_time_s, "
    "frames_done, num_frames_delivered, attempts, heartbeat_at, chunks_done, resumed_from_chunk, "
    "video_sha256, stats"
)
NAMES = tuple(name.strip() for name in COLUMNS.split(","))
PLACEHOLDERS = ", ".join("?" * len(NAMES))
"""Parameter markers are written `?` everywhere (`lifecycle.Dialect` translates them)."""
ASSIGNMENTS = ", ".join(f"{name} = ?" for name in NAMES)

Row = tuple[object, ...]
RowLike = Mapping[str, Any] | Any
"""A row read by column name: sqlite3's `Row`, or PostgreSQL's (psycopg dict rows)."""


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
