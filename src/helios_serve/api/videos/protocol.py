"""The video object on the wire: OpenAI's fields plus vLLM-Omni's, with real values."""

from __future__ import annotations

from typing import Any

from helios_serve.api.videos.wire import video_answer
from helios_serve.jobs.models import Job, JobStatus

POLL_AFTER_MS = 1000
"""Sent as `openai-poll-after-ms` on polls: the SDK's `poll()` honours it."""


def format_seconds(seconds: float) -> str:
    """Up to three decimals, no trailing zeros: "4", "4.125", "0.042"."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def seconds_of(job: Job) -> str:
    """The video's length: its delivered frames / fps; `seconds` as the client wrote it (OpenAI's
    "4", "8", "12") when that is exactly the length delivered."""
    spec = job.spec
    delivered = job.num_frames_delivered / spec.fps
    asked = spec.requested_seconds
    if asked is not None and _as_number(asked) == delivered:
        return asked
    return format_seconds(delivered)


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def size_of(job: Job) -> tuple[int, int]:
    """The video's own size: an OpenAI literal it was cropped to, or the generated size."""
    spec = job.spec
    return spec.output_size or (spec.width, spec.height)


def video_object(job: Job) -> dict[str, Any]:
    """The JSON a client sees for `job` (OpenAI `Video` + `file_name`, frames, size...),
    checked against the documented model (`wire.Video`)."""
    return video_answer(_video_fields(job))


def _video_fields(job: Job) -> dict[str, Any]:
    spec = job.spec
    ext = spec.extension
    width, height = size_of(job)
    cache = spec.settings.step_cache
    frames = job.num_frames_delivered
    error = None
    if job.status is JobStatus.FAILED:
        error = {"code": job.error_code or "internal_error", "message": job.error_message or ""}
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": job.status.value,
        "progress": job.progress,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "expires_at": job.expires_at,
        "prompt": spec.prompt,
        "remixed_from_video_id": job.remixed_from_video_id,
        "seconds": seconds_of(job),
        "size": f"{width}x{height}",
        "error": error,
        "file_name": f"{job.id}.mp4" if job.status is JobStatus.COMPLETED else None,
        "media_type": "video/mp4",
        "inference_time_s": job.inference_time_s,
        "stage_durations": (job.stats or {}).get("stage_durations"),
        "peak_memory_mb": (job.stats or {}).get("peak_memory_mb"),
        "num_frames": frames,
        "frames_done": job.frames_done,
        "fps": spec.fps,
        "width": width,
        "height": height,
        "generated_size": f"{spec.width}x{spec.height}",
        "seed": spec.seed,
        "extended_from_video_id": None if ext is None else ext.source_id,
        "extension_mode": None if ext is None else ext.mode,
        "chunks_done": job.chunks_done,
        "resumed_from_chunk": job.resumed_from_chunk,
        "step_cache": None if cache is None else cache.to_json(),
    }


def deleted_object(job_id: str) -> dict[str, Any]:
    return {"id": job_id, "object": "video.deleted", "deleted": True}


def list_object(jobs: list[Job], has_more: bool) -> dict[str, Any]:
    data = [video_object(j) for j in jobs]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
