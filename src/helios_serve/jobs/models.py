"""Job records, their statuses and the legal transitions between them (pure, no I/O)."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import (
    delivered_frames,
    settings_from_json,
    settings_to_json,
)
from helios_serve.errors import ConflictError, HeliosError, NotFoundError

ReferenceKind = Literal["image", "video"]
ExtensionMode = Literal["state", "v2v"]

_JOB_ID = re.compile(r"video_[0-9a-f]{32}")


class JobStatus(StrEnum):
    """A job's lifecycle; the values are OpenAI's wire strings."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # queued -> failed: a job refused before it runs (shutdown, vanished upload).
    JobStatus.QUEUED: frozenset({JobStatus.IN_PROGRESS, JobStatus.FAILED}),
    # in_progress -> queued: the worker was lost and the job gets another attempt.
    JobStatus.IN_PROGRESS: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.QUEUED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
}
"""Legal moves; terminal states have none (deletion removes the record instead)."""


class InvalidTransitionError(HeliosError):
    """A status change the lifecycle forbids, e.g. completing a queued or failed job."""

    code = "invalid_state"


class StaleAttemptError(InvalidTransitionError):
    """A write from an attempt that is no longer the job's latest: another worker took the job
    over (this one was paused or cut off past its lease). The write is refused."""

    code = "stale_attempt"


def check_attempt(job: Job, attempt: int | None) -> None:
    """Fencing: raise `StaleAttemptError` unless `attempt` is None or the job's current one."""
    if attempt is not None and job.attempts != attempt:
        raise StaleAttemptError(
            f"job {job.id} is at attempt {job.attempts}; a write from attempt {attempt} is refused"
        )


class JobNotReadyError(ConflictError):
    """The job is not completed yet (or failed): its content, a remix or an extension of it
    cannot be had."""

    code = "video_not_ready"


class JobNotFoundError(NotFoundError):
    """No job has this id (never created, deleted, or not a well-formed id)."""

    code = "video_not_found"


def check_transition(old: JobStatus, new: JobStatus) -> None:
    """Raise `InvalidTransitionError` unless `old -> new` is in `TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransitionError(f"a job cannot go from {old.value} to {new.value}")


def new_job_id() -> str:
    """A fresh unguessable id: `video_` and 32 hex digits (uuid4 carries 122 random bits)."""
    return f"video_{uuid.uuid4().hex}"


def is_valid_job_id(text: object) -> bool:
    """True only for ids shaped like `new_job_id()`'s, so no id can name a path."""
    # fullmatch, not `$`: `$` would also accept a trailing newline.
    return isinstance(text, str) and _JOB_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Extension:
    """The finished video an extension job continues, and how.

    `state`: from the source's saved final stream state (after its stream's `base_chunks`
    chunks), so the new chunks are exactly those the source stream would have made next with
    the new prompt; the video opens with the source's frames up to its last chunk and that
    chunk whole (`base_frames` in all, the source's tail untrimmed). `v2v`: the source's
    state is gone (made before states were kept), so its last frames condition a V2V stream;
    the video opens with the source's `base_frames` delivered frames.
    """

    source_id: str | None
    """None for an uploaded video that is none of ours."""
    mode: ExtensionMode
    base_frames: int
    base_chunks: int = 0

    def __post_init__(self) -> None:
        if self.source_id is not None and not is_valid_job_id(self.source_id):
            raise ValueError(f"malformed source id {self.source_id!r}")
        if self.mode == "state" and self.source_id is None:
            raise ValueError("only a video of ours has a saved state")
        if self.mode not in ("state", "v2v"):
            raise ValueError(f"unknown extension mode {self.mode!r}")
        if self.base_frames < 1 or self.base_chunks < 0:
            raise ValueError("an extension continues a video of at least one frame")

    def to_json(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "mode": self.mode,
            "base_frames": self.base_frames,
            "base_chunks": self.base_chunks,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Extension:
        source = data.get("source_id")
        return cls(
            source_id=None if source is None else str(source),
            mode=data["mode"],
            base_frames=int(data["base_frames"]),
            base_chunks=int(data.get("base_chunks", 0)),
        )


@dataclass(frozen=True)
class GenerationSpec:
    """A job's fully resolved parameters: what the worker runs, with nothing left to default."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    """Frames requested, and delivered: the video has exactly these."""
    fps: int
    seed: int
    settings: SamplingSettings
    reference_file: str | None = None
    """File name of the stored upload inside the job's directory."""
    reference_kind: ReferenceKind | None = None
    extension: Extension | None = None
    """Set for a job that extends a finished video; `num_frames` then counts the whole."""
    requested_seconds: str | None = None
    """`seconds` as the client asked (echoed in the video object); None if frames were asked."""
    output_size: tuple[int, int] | None = None
    """(width, height) the video is cropped to, when it differs from the generated size (one
    of OpenAI's size literals that the model cannot make directly)."""

    def __post_init__(self) -> None:
        for name in ("width", "height", "num_frames", "fps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if (self.reference_file is None) != (self.reference_kind is None):
            raise ValueError("reference_file and reference_kind must be set together")
        if self.extension is not None and self.num_frames <= self.extension.base_frames:
            raise ValueError("an extension must add frames to its source")

    @property
    def delivered_frames(self) -> int:
        """Frames the finished video has: exactly `num_frames` (whole chunks are made, the last
        one cut). An extension's `num_frames` counts the whole: its base, then the new part."""
        return delivered_frames(self.num_frames)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples become lists); `from_json` restores an equal spec."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "seed": self.seed,
            "settings": settings_to_json(self.settings),
            "reference_file": self.reference_file,
            "reference_kind": self.reference_kind,
            "extension": None if self.extension is None else self.extension.to_json(),
            "requested_seconds": self.requested_seconds,
            "output_size": None if self.output_size is None else list(self.output_size),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationSpec:
        kind = data.get("reference_kind")
        if kind not in (None, "image", "video"):
            raise ValueError(f"unknown reference_kind {kind!r}")
        return cls(
            prompt=str(data["prompt"]),
            negative_prompt=str(data["negative_prompt"]),
            width=int(data["width"]),
            height=int(data["height"]),
            num_frames=int(data["num_frames"]),
            fps=int(data["fps"]),
            seed=int(data["seed"]),
            settings=settings_from_json(data["settings"]),
            reference_file=data.get("reference_file"),
            reference_kind=kind,
            extension=Extension.from_json(data["extension"]) if data.get("extension") else None,
            requested_seconds=data.get("requested_seconds"),
            output_size=_size_pair(data.get("output_size")),
        )


def _size_pair(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    width, height = (int(v) for v in value)
    return width, height


@dataclass(frozen=True)
class Job:
    """One `/v1/videos` job as stored; the API maps it to OpenAI's video object."""

    id: str
    model: str
    status: JobStatus
    progress: int
    created_at: int
    started_at: int | None
    completed_at: int | None
    expires_at: int | None
    spec: GenerationSpec
    remixed_from_video_id: str | None
    error_code: str | None
    error_message: str | None
    file_name: str | None
    inference_time_s: float | None
    frames_done: int
    """Frames written so far."""
    num_frames_delivered: int
    """Frames the video really has (what was asked; rows made before exact counts hold the
    4k+1 count of their day)."""
    attempts: int
    """Times a worker has claimed this job."""
    heartbeat_at: float | None
    """Unix time of the worker's last sign of life while in progress."""
    chunks_done: int = 0
    """Chunks whose segment and stream state are saved: a new attempt starts after them."""
    resumed_from_chunk: int | None = None
    """The chunk the latest attempt started at, when it continued an interrupted one."""
    video_sha256: str | None = None
    """SHA-256 of the finished MP4: an upload of the same bytes is this video."""
    stats: dict[str, Any] | None = None
    """How the run went: seconds per stage (`stage_durations`), `peak_memory_mb`."""

    def __post_init__(self) -> None:
        if not is_valid_job_id(self.id):
            raise ValueError(f"malformed job id {self.id!r}")
        if not 0 <= self.progress <= 100:
            raise ValueError(f"progress must be within 0..100, got {self.progress}")

    @classmethod
    def new(
        cls,
        model: str,
        spec: GenerationSpec,
        *,
        remixed_from_video_id: str | None = None,
        created_at: int | None = None,
        job_id: str | None = None,
    ) -> Job:
        """A fresh queued job, ready for `JobStore.create`."""
        return cls(
            id=job_id or new_job_id(),
            model=model,
            status=JobStatus.QUEUED,
            progress=0,
            created_at=int(time.time()) if created_at is None else created_at,
            started_at=None,
            completed_at=None,
            expires_at=None,
            spec=spec,
            remixed_from_video_id=remixed_from_video_id,
            error_code=None,
            error_message=None,
            file_name=None,
            inference_time_s=None,
            frames_done=0,
            num_frames_delivered=spec.delivered_frames,
            attempts=0,
            heartbeat_at=None,
        )


WORKER_LOST = "worker_lost"
"""`error_code` of a job whose worker died on it `max_attempts` times."""


def back_to_queue(job: Job) -> Job:
    """`job` re-entering the queue: attempts, progress and saved chunks kept (the next attempt
    continues after them)."""
    check_transition(job.status, JobStatus.QUEUED)
    return replace(job, status=JobStatus.QUEUED, started_at=None, heartbeat_at=None)


def claimed(job: Job, now: float) -> Job:
    """A queued `job` as a worker claims it: in_progress, one more attempt."""
    check_transition(job.status, JobStatus.IN_PROGRESS)
    return replace(
        job,
        status=JobStatus.IN_PROGRESS,
        attempts=job.attempts + 1,
        started_at=int(now),
        heartbeat_at=now,
    )


def holds_lease(job: Job, now: float, lease_s: float) -> bool:
    """`job` runs, and its attempt reported in within `lease_s` of `now` (one clock's)."""
    heartbeat = job.heartbeat_at
    return (
        job.status is JobStatus.IN_PROGRESS and heartbeat is not None and heartbeat >= now - lease_s
    )


def taken_over(job: Job, max_attempts: int, now: float) -> Job | None:
    """`job` as the worker the queue handed it to takes it: a queued job is claimed; one still
    in_progress (its worker was lost, says the queue) gets a new attempt, or fails once out of
    attempts; a finished job has nothing left to do (None)."""
    if job.status.is_terminal:
        return None
    if job.status is JobStatus.IN_PROGRESS:
        settled = settle_lost(job, max_attempts, int(now))
        if settled.status is JobStatus.FAILED:
            return settled
        job = settled
    return claimed(job, now)


def settle_lost(job: Job, max_attempts: int, now: int) -> Job:
    """An in_progress job whose worker was lost: queued again, or failed once out of attempts."""
    if job.attempts < max_attempts:
        return back_to_queue(job)
    check_transition(job.status, JobStatus.FAILED)
    return replace(
        job,
        status=JobStatus.FAILED,
        completed_at=now,
        error_code=WORKER_LOST,
        error_message=(
            f"The worker stopped while running this video (attempt {job.attempts} of "
            f"{max_attempts}); it is not retried again."
        ),
    )
