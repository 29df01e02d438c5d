"""VideosService: validated requests → persisted jobs → video objects. No FastAPI here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from helios_serve.api.videos.fields import VideoCreateRequest
from helios_serve.api.videos.protocol import deleted_object, list_object, video_object
from helios_serve.api.videos.resolve import ResolvedParams, resolve_spec_fields
from helios_serve.core.spec import ModelInfo
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.models import GenerationSpec, Job, JobStatus, new_job_id
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.store import JobStore
from helios_serve.media.decode import MediaKind
from helios_serve.web.errors import ApiError

ContentVariant = Literal["video", "thumbnail", "spritesheet"]
CONTENT_TYPES: dict[str, tuple[str, str]] = {
    "video": ("video.mp4", "video/mp4"),
    "thumbnail": ("thumbnail.jpg", "image/jpeg"),
    "spritesheet": ("spritesheet.jpg", "image/jpeg"),
}
QUEUE_RETRY_AFTER_S = 10


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
    )


class VideosService:
    """Creates, reads, lists, deletes and remixes jobs; the runner does the generating."""

    def __init__(
        self, store: JobStore, files: JobFiles, runner: JobRunner, model: ModelInfo, max_queue: int
    ) -> None:
        self._store = store
        self._files = files
        self._runner = runner
        self._model = model
        self._max_queue = max_queue

    async def create(self, request: VideoCreateRequest) -> dict[str, Any]:
        params = resolve_spec_fields(request, self._model)
        ref = params.reference
        job = await self._enqueue(
            request.model or self._model.name,
            _spec(params),
            None if ref is None else (ref.data, ref.kind),
            remixed_from=None,
        )
        return video_object(job)

    async def _enqueue(
        self,
        model_name: str,
        spec: GenerationSpec,
        reference: tuple[bytes, MediaKind] | None,
        remixed_from: str | None,
    ) -> Job:
        """Persist a queued job (and its reference file); 429 when the queue is full."""
        depth = await asyncio.to_thread(self._store.queue_depth)
        if depth >= self._max_queue:
            raise ApiError(
                429,
                f"the queue is full ({depth} jobs waiting); retry later",
                code="queue_full",
                headers={"Retry-After": str(QUEUE_RETRY_AFTER_S)},
            )
        job_id = new_job_id()
        if reference is not None:
            data, kind = reference
            name = await asyncio.to_thread(self._files.save_reference, job_id, data, f".{kind}")
            spec = replace(spec, reference_file=name, reference_kind=kind)
        job = Job.new(model_name, spec, remixed_from_video_id=remixed_from, job_id=job_id)
        try:
            created = await asyncio.to_thread(self._store.create, job)
        except BaseException:
            await asyncio.to_thread(self._files.remove, job_id)
            raise
        self._runner.wake()
        return created

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
        await asyncio.to_thread(self._files.remove, video_id)
        return deleted_object(video_id)

    async def content(self, video_id: str, variant: str) -> ContentFile:
        if variant not in CONTENT_TYPES:
            raise ApiError(
                400,
                f"variant must be one of {', '.join(CONTENT_TYPES)}",
                code="invalid_value",
                param="variant",
            )
        job = await asyncio.to_thread(self._store.get, video_id)
        if job.status is not JobStatus.COMPLETED:
            raise ApiError(
                409,
                f"video {video_id} is {job.status.value}, not completed",
                code="video_not_ready",
                param="video_id",
            )
        name, media_type = CONTENT_TYPES[variant]
        path = self._files.file_path(video_id, name)
        if not path.is_file():
            raise ApiError(404, f"the {variant} of {video_id} is missing", code="not_found")
        suffix = "mp4" if variant == "video" else "jpg"
        return ContentFile(path, media_type, f"{video_id}_{variant}.{suffix}")

    async def remix(self, video_id: str, prompt: object) -> dict[str, Any]:
        """A new job with the source job's settings (and reference) and a new prompt."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ApiError(
                400, "prompt must be a non-empty string", code="invalid_value", param="prompt"
            )
        source = await asyncio.to_thread(self._store.get, video_id)
        spec = source.spec
        reference = None
        if spec.reference_file is not None and spec.reference_kind is not None:
            path = self._files.reference_path(source.id, spec.reference_file)
            reference = (await asyncio.to_thread(path.read_bytes), spec.reference_kind)
        fresh = replace(spec, prompt=prompt, reference_file=None, reference_kind=None)
        job = await self._enqueue(source.model, fresh, reference, remixed_from=source.id)
        return video_object(job)

    async def wait(self, video_id: str, poll_s: float = 0.25) -> Job:
        """Until the job is completed or failed (for `/v1/videos/sync`)."""
        while True:
            job = await asyncio.to_thread(self._store.get, video_id)
            if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                return job
            await asyncio.sleep(poll_s)
