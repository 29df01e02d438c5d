"""VideosService: validated requests → persisted jobs → video objects. No FastAPI here."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from helios_serve.api.videos.continuation import (
    STATE_FILES,
    Continuation,
    continue_frames,
    continue_video,
)
from helios_serve.api.videos.extend import ExtendRequest, fitted_upload, load_upload
from helios_serve.api.videos.fields import VideoCreateRequest
from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS, RequestLimits
from helios_serve.api.videos.protocol import deleted_object, list_object, video_object
from helios_serve.api.videos.resolve import ResolvedParams, resolve_spec_fields
from helios_serve.core.requests import RequestError, check_prompt, frames_for_seconds
from helios_serve.core.spec import ModelInfo
from helios_serve.errors import NotFoundError
from helios_serve.jobs.dispatch import JobDispatch
from helios_serve.jobs.files import THUMBNAIL_NAME, VIDEO_NAME, JobFiles
from helios_serve.jobs.mirror import JobMirror
from helios_serve.jobs.models import (
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
from helios_serve.media.segments import Part, join_segments, write_segment

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
    base_opening: tuple[str, int] | None = None
    """(video id, frames): that video's first frames are the base (a remixed extension whose
    source is gone)."""


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
            video = self._files.ensure_base_dir(job_id) / VIDEO_NAME
            write_segment(video, inputs.base_frames, spec.fps)
            thumb = encode_thumbnail(inputs.base_frames[0])
            self._files.base_path(job_id, THUMBNAIL_NAME).write_bytes(thumb)
        if inputs.base_opening is not None:
            self._copy_opening(job_id, *inputs.base_opening, spec.fps)
        if self._mirror is not None:
            self._mirror.push_inputs(job_id)
            self._files.remove(job_id)  # the workers read the store, not this cache
        return spec

    def _copy_opening(self, job_id: str, source_id: str, frames: int, fps: int) -> None:
        """The first `frames` of `source_id`'s video (a chunk boundary: packets are copied)
        and its thumbnail become the job's base."""
        if self._mirror is not None:
            for name in (VIDEO_NAME, THUMBNAIL_NAME):
                self._mirror.fetch(source_id, name)
        base = self._files.ensure_base_dir(job_id)
        join_segments([Part(self._files.video_path(source_id), frames)], base / VIDEO_NAME, fps)
        self._files.link_base(source_id, job_id, (THUMBNAIL_NAME,))

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
        """A new job with the source job's settings (and reference) and a new prompt; a remixed
        extension continues the same video again, with the new prompt (see `_remix_inputs`)."""
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
        spec, inputs = await self._remix_inputs(source)
        fresh = replace(spec, prompt=prompt)
        job = await self._enqueue(source.model, fresh, inputs, remixed_from=source.id, claim=claim)
        return video_object(job)

    async def _remix_inputs(self, source: Job) -> tuple[GenerationSpec, _Inputs]:
        """What a remix of `source` starts with: its reference; for an extension, the video it
        continued (from its state again when that is still there), or, when that video is gone,
        the opening frames of `source` itself (continued from its frames)."""
        spec = source.spec
        ext = spec.extension
        if ext is None:
            reference = None
            if spec.reference_file is not None and spec.reference_kind is not None:
                path = self._files.reference_path(source.id, spec.reference_file)
                if self._mirror is not None:
                    await asyncio.to_thread(self._mirror.fetch, source.id, spec.reference_file)
                reference = (await asyncio.to_thread(path.read_bytes), spec.reference_kind)
            plain = replace(spec, reference_file=None, reference_kind=None)
            return plain, _Inputs(reference=reference)
        origin = await self._completed(ext.source_id)
        if origin is not None:
            again = await self._continuation(origin, 1)
            if again.extension.mode == ext.mode:  # the same base, the same extension
                return spec, _Inputs(base_from=origin.id, base_names=again.base_names)
        opening = continue_frames(ext.base_frames, spec.num_frames - ext.base_frames)
        inputs = _Inputs(base_opening=(source.id, ext.base_frames))
        return replace(spec, extension=opening.extension), inputs

    async def _completed(self, video_id: str | None) -> Job | None:
        """The completed video `video_id`, if there still is one."""
        if video_id is None:
            return None
        try:
            job = await asyncio.to_thread(self._store.get, video_id)
        except JobNotFoundError:
            return None
        return job if job.status is JobStatus.COMPLETED else None

    async def _continuation(self, source: Job, added: int) -> Continuation:
        """`source` followed by `added` frames: from its state when it has one we can use."""
        present = self._files.present if self._mirror is None else self._mirror.present
        names = await asyncio.to_thread(present, source.id, STATE_FILES)
        usable = set(STATE_FILES) <= set(names) and self._model.answers_to(source.model)
        if usable and self._mirror is None:
            # a damaged state would continue into another video: fall back to its frames
            last = plan_for(source.spec).last_chunk
            usable = await asyncio.to_thread(self._files.final_state_intact, source.id, last)
        return continue_video(source, added, from_state=usable)

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
        plan = await self._continuation(source, added)
        fresh = replace(
            spec,
            prompt=request.prompt,
            reference_file=None,
            reference_kind=None,
            num_frames=plan.num_frames,
            extension=plan.extension,
            requested_seconds=None,  # the answer's seconds: the whole, as delivered
        )
        inputs = _Inputs(base_from=source.id, base_names=plan.base_names)
        job = await self._enqueue(self._model.name, fresh, inputs, claim=claim)
        return video_object(job)

    def _added_frames(self, seconds: int, fps: int) -> int:
        return frames_for_seconds(seconds, fps, self._limits.max_num_frames)

    async def _extend_upload(self, request: ExtendRequest, claim: IdempotencyClaim | None) -> Job:
        """An uploaded video that is none of ours: continued from its frames (V2V), at its own
        size (generated at the nearest size the model makes and cut, like any other size)."""
        upload = request.upload or b""
        frames = await asyncio.to_thread(load_upload, upload, self._limits)
        frames, size = fitted_upload(frames, self._model, self._limits)
        params = resolve_spec_fields(
            VideoCreateRequest(
                prompt=request.prompt,
                width=size.width,
                height=size.height,
                num_frames=1,
                output_size=size.output,
            ),
            self._model,
        )
        added = self._added_frames(request.seconds, params.fps)
        plan = continue_frames(len(frames), added)
        spec = replace(_spec(params), num_frames=plan.num_frames, extension=plan.extension)
        return await self._enqueue(self._model.name, spec, _Inputs(base_frames=frames), claim=claim)

    async def wait(self, video_id: str, poll_s: float = 0.25) -> Job:
        """Until the job is completed or failed (for `/v1/videos/sync`)."""
        while True:
            job = await asyncio.to_thread(self._store.get, video_id)
            if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                return job
            await asyncio.sleep(poll_s)
