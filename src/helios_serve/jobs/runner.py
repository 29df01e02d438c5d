"""JobRunner: claims queued jobs in order and drives each through the engine, chunk by chunk.

Progress is written as steps finish, the MP4 is encoded as chunks arrive (never held whole), and
any failure inside a job fails that job only: the next one runs normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helios_serve.core.protocols import Engine, Priority, Stream
from helios_serve.core.spec import StreamRequest, chunks_for, delivered_frames
from helios_serve.core.types import ChunkTimings, StepProgress
from helios_serve.errors import HeliosError, StreamCancelledError
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.metrics import JobMetrics
from helios_serve.jobs.models import Job
from helios_serve.jobs.store import JobNotFoundError, JobStore
from helios_serve.media.decode import load_image, load_video
from helios_serve.media.encode import Mp4Writer, encode_thumbnail
from helios_serve.media.sprite import SpriteCollector

logger = logging.getLogger(__name__)


def failure_code(exc: BaseException) -> str:
    """A stable string code for an exception that escaped the engine."""
    if isinstance(exc, HeliosError):
        return exc.code
    name = type(exc).__name__
    if "OutOfMemory" in name or isinstance(exc, MemoryError) or "out of memory" in str(exc):
        return "out_of_memory"
    return "internal_error"


@dataclass
class _Running:
    job_id: str
    cancelled: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """One consumer of the job queue (the engine has one worker: jobs run one at a time)."""

    def __init__(
        self,
        store: JobStore,
        files: JobFiles,
        engine: Engine,
        metrics: JobMetrics | None = None,
        idle_poll_s: float = 1.0,
    ) -> None:
        self._store = store
        self._files = files
        self._engine = engine
        self._metrics = metrics
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._running: _Running | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="helios-job-runner")

    async def stop(self) -> None:
        """Stop at the next step; a job cut short goes back to the queue for the next start."""
        self._stopping = True
        if self._running is not None:
            self._running.cancelled.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def cancel(self, job_id: str) -> bool:
        """Stop the running job `job_id` at its next step boundary; False if it isn't running."""
        if self._running is not None and self._running.job_id == job_id:
            self._running.cancelled.set()
            return True
        return False

    async def _loop(self) -> None:
        while True:
            job = await asyncio.to_thread(self._store.claim_next)
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_poll_s)
                continue
            await self._run(job)

    async def _run(self, job: Job) -> None:
        running = _Running(job.id)
        self._running = running
        started = time.perf_counter()
        try:
            await self._generate(job, running)
        except (StreamCancelledError, asyncio.CancelledError):
            await asyncio.shield(self._after_cancel(job.id))
            if not self._stopping:
                return
            raise
        except Exception as exc:  # one job's failure must never stop the runner
            code = failure_code(exc)
            message = (
                exc.message if isinstance(exc, HeliosError) else f"{type(exc).__name__}: {exc}"
            )
            logger.warning("job %s failed (%s): %s", job.id, code, message)
            await self._finish_failed(job.id, code, message)
        else:
            elapsed = time.perf_counter() - started
            await self._finish_completed(job, elapsed)
        finally:
            self._running = None

    async def _generate(self, job: Job, running: _Running) -> None:
        spec = job.spec
        request = await asyncio.to_thread(self._stream_request, job)
        stream = await self._engine.open_stream(request, Priority.JOB)
        chunks = chunks_for(spec.num_frames)
        keep = delivered_frames(spec.num_frames)
        tracker = _ProgressTracker(self._store, job.id, stream, chunks)
        sprites = SpriteCollector(keep)
        await asyncio.to_thread(self._files.ensure_dir, job.id)
        path = self._files.video_path(job.id)
        writer = await asyncio.to_thread(Mp4Writer, path, spec.width, spec.height, spec.fps)
        written = 0
        try:
            for index in range(chunks):
                chunk = await stream.next_chunk(
                    tracker.on_step, running.cancelled.is_set, prefetch=index + 1 < chunks
                )
                frames = chunk.frames[: keep - written]
                await asyncio.to_thread(writer.write, frames)
                if index == 0:
                    thumb = await asyncio.to_thread(encode_thumbnail, frames[0])
                    await asyncio.to_thread(self._files.write_bytes, job.id, "thumbnail.jpg", thumb)
                sprites.add(frames)
                written += len(frames)
                tracker.chunk_done(written, chunk.timings)
                if self._metrics is not None:
                    self._metrics.observe_chunk(chunk.timings.total_s)
            await asyncio.to_thread(writer.close)
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        finally:
            await stream.close()
        sheet = await asyncio.to_thread(sprites.render_jpeg)
        await asyncio.to_thread(self._files.write_bytes, job.id, "spritesheet.jpg", sheet)

    def _stream_request(self, job: Job) -> StreamRequest:
        spec = job.spec
        image: Any = None
        video: Any = None
        if spec.reference_file is not None:
            path: Path = self._files.reference_path(job.id, spec.reference_file)
            if spec.reference_kind == "video":
                video = load_video(path, param="input_reference")
            else:
                image = load_image(path, param="input_reference")
        settings = spec.settings.with_overrides(negative_prompt=spec.negative_prompt)
        return StreamRequest(
            prompt=spec.prompt,
            height=spec.height,
            width=spec.width,
            seed=spec.seed,
            settings=settings,
            image=image,
            video=video,
        )

    async def _after_cancel(self, job_id: str) -> None:
        """Deleted → its files go; server stopping → it runs again after the restart."""
        if self._stopping:
            with contextlib.suppress(HeliosError):
                await asyncio.to_thread(self._store.requeue, job_id)
                logger.info("job %s interrupted by shutdown: queued again", job_id)
                return
        logger.info("job %s cancelled", job_id)
        await asyncio.to_thread(self._files.remove, job_id)

    async def _finish_completed(self, job: Job, elapsed: float) -> None:
        try:
            await asyncio.to_thread(
                self._store.complete,
                job.id,
                "video.mp4",
                round(elapsed, 3),
                delivered_frames(job.spec.num_frames),
            )
        except JobNotFoundError:  # deleted while finishing: its files go too
            await asyncio.to_thread(self._files.remove, job.id)
        if self._metrics is not None:
            self._metrics.job_finished("completed")

    async def _finish_failed(self, job_id: str, code: str, message: str) -> None:
        try:
            await asyncio.to_thread(self._store.fail, job_id, code, message)
        except JobNotFoundError:
            await asyncio.to_thread(self._files.remove, job_id)
        if self._metrics is not None:
            self._metrics.job_finished("failed")


class _ProgressTracker:
    """Turns per-step callbacks (on the engine thread) into monotonic 0-99 % progress.

    Each chunk is an equal share; within a chunk the denoising steps cover the part of the
    chunk's time the previous chunk spent denoising (the rest is VAE decode and encoding), so
    the number moves evenly whether the transformer or the decoder dominates. 100 % is only
    ever written by `complete`, once the MP4 is in place.
    """

    def __init__(self, store: JobStore, job_id: str, stream: Stream, chunks: int) -> None:
        self._store = store
        self._job_id = job_id
        self._steps = [max(1, stream.steps_in_chunk(i)) for i in range(chunks)]
        self._chunks = chunks
        self._chunks_done = 0
        self._denoise_share = 0.5  # until a chunk has been timed
        self._frames = 0
        self._last = -1

    def on_step(self, progress: StepProgress) -> None:
        # with prefetch the steps may be those of the chunk after the one being decoded
        index = min(max(progress.chunk_index, self._chunks_done), self._chunks - 1)
        within = self._denoise_share * progress.step / self._steps[index]
        self._publish(index + within)

    def chunk_done(self, frames_written: int, timings: ChunkTimings) -> None:
        self._chunks_done += 1
        self._frames = frames_written
        if timings.total_s > 0:
            self._denoise_share = min(1.0, timings.transformer_s / timings.total_s)
        self._publish(self._chunks_done, force=True)

    def _publish(self, chunks: float, force: bool = False) -> None:
        percent = min(99, int(chunks * 100 / self._chunks))
        if percent <= self._last and not force:
            return
        self._last = max(self._last, percent)
        # Deleted or finished under us: progress no longer matters.
        with contextlib.suppress(HeliosError):
            self._store.update_progress(self._job_id, self._last, self._frames)
