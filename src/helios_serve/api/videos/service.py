"""VideosService: validated requests → persisted jobs → video objects. No FastAPI here."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from helios_serve.api.videos.extend import ExtendRequest, check_size, load_upload
from helios_serve.api.videos.fields import VideoCreateRequest
from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS, RequestLimits
from helios_serve.api.videos.protocol import (
    deleted_object,
    format_seconds,
    list_object,
    seconds_of,
    video_object,
)
from helios_serve.api.videos.resolve import ResolvedParams, resolve_spec_fields
from helios_serve.core.requests import RequestError, check_prompt, frames_for_seconds
from helios_serve.core.spec import ModelInfo
from helios_serve.core.types import FRAMES_PER_CHUNK
from helios_serve.errors import NotFoundError
from helios_serve.jobs.dispatch import JobDispatch
from helios_serve.jobs.files import STATE_NAME, TAIL_NAME, THUMBNAIL_NAME, VIDEO_NAME, JobFiles
from helios_serve.jobs.mirror import JobMirror
from helios_serve.jobs.models import (
    Extension,
    GenerationSpec,
    Job,
    JobNotFoundError,
    JobNotReadyError,
    JobStatus,
    new_job_id,
)
from helios_serve.jobs.plan import plan_for
from helios_serve.jobs.records import IdempotencyClaim, JobRecords
from helios_serve.media.decode import MediaKind
from helios_serve.media.encode import encode_thumbnail
from helios_serve.media.segments import write_segment

ContentVariant = Literal["video", "thumbnail", "spritesheet"]
CONTENT_TYPES: dict[str, tuple[str, str]] = {
    "video": ("video.mp4", "video/mp4"),
    "thumbnail": ("thumbnail.jpg", "image/jpeg"),
    "spritesheet": ("spritesheet.jpg", "image/jpeg"),
}


def wants_jpeg(accept: str) -> bool:
    """`Accept` names JPEG and not WebP (`*/*` and no header mean WebP)."""
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return "image/jpeg" in kinds and "image/webp" not in kinds


@dataclass(frozen=True)
class _Inputs:
    """Files a new job starts with: a reference upload, or an extension's base."""

    reference: tuple[bytes, MediaKind] | None = None
    base_from: str | None = None
    base_names: tuple[str, ...] = ()
    base_frames: npt.NDArray[np.uint8] | None = None


@dataclass(frozen=True)
class ContentFile:
    path: Path
    media_type: str
    download_name: str


def _spec(params: ResolvedParams) -> GenerationSpec:
    """The job's spec without its reference (saved first, then attached with its file name)."""
    return GenerationSpec(
        prompt=params.prompt,
        negative_prompt=params.settings.negative_prompt,
        width=params.width,
        height=params.height,
        num_frames=params.num_frames,
        fps=params.fps,
        seed=params.seed,
        settings=params.settings,
        requested_seconds=params.requested_seconds,
        output_size=params.output_size,
    )


class VideosService:
    """Creates, reads, lists, deletes and remixes jobs; the runner does the generating."""

    def __init__(
        self,
        store: JobRecords,
        files: JobFiles,
        runner: JobDispatch,
        model: ModelInfo,
        max_queue: int,
        limits: RequestLimits = DEFAULT_REQUEST_LIMITS,
        mirror: JobMirror | None = None,
    ) -> None:
        """With a `mirror` (a cluster gateway), `files` is only a local cache: inputs go to the
        blob store before the job is admitted, content is fetched from it when first asked."""
        self._store = store
        self._files = files
        self._runner = runner
        self._mirror = mirror
        self._model = model
        self._max_queue = max_queue
        self._limits = limits

    async def create(
        self, request: VideoCreateRequest, claim: IdempotencyClaim | None = None
    ) -> dict[str, Any]:
        if (earlier := await self._claimed(claim)) is not None:
            return video_object(earlier)
        params = resolve_spec_fields(request, self._model)
        ref = params.reference
        job = await self._enqueue(
            request.model or self._model.name,
            _spec(params),
            _Inputs(reference=None if ref is None else (ref.data, ref.kind)),
            claim=claim,
        )
        return video_object(job)

    async def _claimed(self, claim: IdempotencyClaim | None) -> Job | None:
        """The job an earlier request with this key made (answered before any work)."""
        if claim is None:
            return None
        return await asyncio.to_thread(self._store.find_claimed, claim)

    async def _enqueue(
        self,
        model_name: str,
        spec: GenerationSpec,
        inputs: _Inputs,
        *,
        remixed_from: str | None = None,
        claim: IdempotencyClaim | None = None,
    ) -> Job:
        """Persist a queued job and its input files (`QueueFullError` when the queue is)."""
        job_id = new_job_id()
        try:
            spec = await asyncio.to_thread(self._save_inputs, job_id, spec, inputs)
            job = Job.new(model_name, spec, remixed_from_video_id=remixed_from, job_id=job_id)
            stored, created = await asyncio.to_thread(
                self._store.admit, job, max_queue=self._max_queue, claim=claim
            )
        except BaseException:
            await asyncio.to_thread(self._remove_files, job_id)
            raise
        if not created:  # a concurrent request with the same key won
            await asyncio.to_thread(self._remove_files, job_id)
        else:
            await self._runner.submitted(stored.id)
        return stored

    def _remove_files(self, job_id: str) -> None:
        self._files.remove(job_id)
        if self._mirror is not None:
            self._mirror.remove(job_id)

    def _save_inputs(self, job_id: str, spec: GenerationSpec, inputs: _Inputs) -> GenerationSpec:
        if inputs.reference is not None:
            data, kind = inputs.reference
            name = self._files.save_reference(job_id, data, f".{kind}")
            spec = replace(spec, reference_file=name, reference_kind=kind)
        if inputs.base_from is not None:
            if self._mirror is not None:  # the source's files may live on no machine here
                self._mirror.copy_base(inputs.base_from, job_id, inputs.base_names)
            else:
                self._files.link_base(inputs.base_from, job_id, inputs.base_names)
        if inputs.base_frames is not None:
            write_segment(self._files.base_path(job_id, VIDEO_NAME), inputs.base_frames, spec.fps)
            thumb = encode_thumbnail(inputs.base_frames[0])
            self._files.base_path(job_id, THUMBNAIL_NAME).write_bytes(thumb)
        if self._mirror is not None:
            self._mirror.push_inputs(job_id)
            self._files.remove(job_id)  # the workers read the store, not this cache
        return spec

    async def get(self, video_id: str) -> dict[str, Any]:
        return video_object(await asyncio.to_thread(self._store.get, video_id))

    async def get_job(self, video_id: str) -> Job:
        return await asyncio.to_thread(self._store.get, video_id)

    async def list(
        self, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> dict[str, Any]:
        jobs, has_more = await asyncio.to_thread(self._store.list, after, limit, order)
        return list_object(jobs, has_more)

    async def delete(self, video_id: str) -> dict[str, Any]:
        job = await asyncio.to_thread(self._store.delete, video_id)
        if job.status is JobStatus.IN_PROGRESS:
            self._runner.cancel(video_id)  # stops at the next step; the runner cleans up
        await asyncio.to_thread(self._remove_files, video_id)
        return deleted_object(video_id)

    async def content(self, video_id: str, variant: str, accept: str = "") -> ContentFile:
        """A completed video's MP4, or its thumbnail / spritesheet: WebP (OpenAI's documented
        type) unless the client accepts JPEG and not WebP."""
        if variant not in CONTENT_TYPES:
            raise RequestError(
                f"variant must be one of {', '.join(CONTENT_TYPES)}", param="variant"
            )
        job = await asyncio.to_thread(self._store.get, video_id)
        if job.status is not JobStatus.COMPLETED:
            raise JobNotReadyError(
                f"video {video_id} is {job.status.value}, not completed", param="video_id"
            )
        name, media_type = CONTENT_TYPES[variant]
        path = self._files.file_path(video_id, name)
        if self._mirror is not None:  # finished files never change: fetched once, then cached
            await asyncio.to_thread(self._mirror.fetch, video_id, name)
        if not path.is_file():
            raise NotFoundError(f"the {variant} of {video_id} is missing")
        if variant == "video":
            return ContentFile(path, media_type, f"{video_id}.mp4")
        if wants_jpeg(accept):
            return ContentFile(path, media_type, f"{video_id}_{variant}.jpg")
        webp = await asyncio.to_thread(self._files.webp_copy, video_id, name)
        return ContentFile(webp, "image/webp", f"{video_id}_{variant}.webp")

    async def discard(self, video_id: str) -> None:
        """Remove a job and its files (`/sync` leaves nothing in the list)."""
        with contextlib.suppress(JobNotFoundError):
            await asyncio.to_thread(self._store.delete, video_id)
        await asyncio.to_thread(self._remove_files, video_id)

    async def remix(
        self, video_id: str, prompt: object, claim: IdempotencyClaim | None = None
    ) -> dict[str, Any]:
        """A new job with the source job's settings (and reference) and a new prompt."""
        prompt = check_prompt(prompt)  # create's rules
        if (earlier := await self._claimed(claim)) is not None:
            return video_object(earlier)
        source = await asyncio.to_thread(self._store.get, video_id)
        if source.status is not JobStatus.COMPLETED:
            raise JobNotReadyError(
                f"video {source.id} is {source.status.value}; only a completed video can be "
                "remixed",
                param="video_id",
            )
        spec = source.spec
        reference = None
        if spec.reference_file is not None and spec.reference_kind is not None:
            path = self._files.reference_path(source.id, spec.reference_file)
            if self._mirror is not None:
                await asyncio.to_thread(self._mirror.fetch, source.id, spec.reference_file)
            reference = (await asyncio.to_thread(path.read_bytes), spec.reference_kind)
        fresh = replace(spec, prompt=prompt, reference_file=None, reference_kind=None)
        job = await self._enqueue(
            source.model, fresh, _Inputs(reference=reference), remixed_from=source.id, claim=claim
        )
        return video_object(job)

    async def extend(
        self, request: ExtendRequest, claim: IdempotencyClaim | None = None
    ) -> dict[str, Any]:
        """A new job whose video is the source's followed by `seconds` more (see extend.py)."""
        if (earlier := await self._claimed(claim)) is not None:
            return video_object(earlier)
        source: Job | None
        if request.upload is not None:
            digest = request.upload_sha256 or ""
            source = await asyncio.to_thread(self._store.find_by_video_digest, digest)
            if source is None:
                return video_object(await self._extend_upload(request, claim))
        else:
            source = await asyncio.to_thread(self._store.get, request.source_id or "")
        if source.status is not JobStatus.COMPLETED:
            raise JobNotReadyError(
                f"video {source.id} is {source.status.value}; only a completed video can be "
                "extended",
                param="video",
            )
        spec = source.spec
        added = self._added_frames(request.seconds, spec.fps)
        present = self._files.present if self._mirror is None else self._mirror.present
        names = await asyncio.to_thread(present, source.id, (STATE_NAME, TAIL_NAME, THUMBNAIL_NAME))
        if {STATE_NAME, TAIL_NAME} <= set(names) and self._model.answers_to(source.model):
            plan = plan_for(spec)
            base = source.num_frames_delivered - plan.frames_kept(plan.last_chunk)
            ext = Extension(source.id, "state", base + FRAMES_PER_CHUNK, plan.end_chunk)
            linked: tuple[str, ...] = (VIDEO_NAME, STATE_NAME, TAIL_NAME, THUMBNAIL_NAME)
        else:  # made before states were kept, or by another model: continue its frames
            ext = Extension(source.id, "v2v", source.num_frames_delivered)
            linked = (VIDEO_NAME, THUMBNAIL_NAME)
        total = float(seconds_of(source)) + request.seconds  # OpenAI: the stitched whole
        fresh = replace(
            spec,
            prompt=request.prompt,
            reference_file=None,
            reference_kind=None,
            num_frames=ext.base_frames + added,
            extension=ext,
            requested_seconds=format_seconds(total),
        )
        inputs = _Inputs(base_from=source.id, base_names=linked)
        job = await self._enqueue(self._model.name, fresh, inputs, claim=claim)
        return video_object(job)

    def _added_frames(self, seconds: int, fps: int) -> int:
        return frames_for_seconds(seconds, fps, self._limits.max_num_frames)

    async def _extend_upload(self, request: ExtendRequest, claim: IdempotencyClaim | None) -> Job:
        """An uploaded video that is none of ours: continued from its frames (V2V)."""
        upload = request.upload or b""
        frames = await asyncio.to_thread(load_upload, upload, self._limits)
        _, height, width, _ = frames.shape
        params = resolve_spec_fields(
            VideoCreateRequest(prompt=request.prompt, width=width, height=height, num_frames=1),
            self._model,
        )
        check_size(width, height, self._model, self._limits)
        added = self._added_frames(request.seconds, params.fps)
        spec = replace(
            _spec(params),
            num_frames=len(frames) + added,
            extension=Extension(None, "v2v", len(frames)),
            requested_seconds=format_seconds(len(frames) / params.fps + request.seconds),
        )
        return await self._enqueue(self._model.name, spec, _Inputs(base_frames=frames), claim=claim)

    async def wait(self, video_id: str, poll_s: float = 0.25) -> Job:
        """Until the job is completed or failed (for `/v1/videos/sync`)."""
        while True:
            job = await asyncio.to_thread(self._store.get, video_id)
            if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                return job
            await asyncio.sleep(poll_s)
