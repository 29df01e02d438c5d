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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from helios_serve.core.protocols import Engine, Priority
from helios_serve.errors import (
    EngineFailedError,
    EngineRestartedError,
    HeliosError,
    StreamCancelledError,
)
from helios_serve.jobs.assembly import (
    assemble,
    center_crop,
    save_chunk,
)
from helios_serve.jobs.files import VIDEO_NAME, JobFiles
from helios_serve.jobs.inputs import stream_request
from helios_serve.jobs.metrics import JobMetrics
from helios_serve.jobs.mirror import JobMirror
from helios_serve.jobs.models import (
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    StaleAttemptError,
)
from helios_serve.jobs.outcome import RunStats, failure_code, safe_message
from helios_serve.jobs.plan import JobPlan, plan_for
from helios_serve.jobs.progress import ProgressTracker
from helios_serve.jobs.records import JobRecords, StoreUnavailableError

logger = logging.getLogger(__name__)
T = TypeVar("T")

STOP_GRACE_S = 30.0
"""How long a stop waits for the running job to reach a step boundary (and go back to the
queue) before it abandons the job's task; a denoising step of the 14B model takes < 1 s."""
STORE_RETRY_FIRST_S = 0.5
STORE_RETRY_MAX_S = 30.0
MAX_ENGINE_RESTARTS = 2
"""A second engine failure during one job fails that job instead of looping on it."""


@dataclass
class _Running:
    job_id: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    stats: RunStats = field(default_factory=RunStats)


class JobRunner:
    """One consumer of the job queue (the engine has one worker: jobs run one at a time)."""

    def __init__(
        self,
        store: JobRecords,
        files: JobFiles,
        engine: Engine,
        metrics: JobMetrics | None = None,
        idle_poll_s: float = 1.0,
        mirror: JobMirror | None = None,
    ) -> None:
        """With a `mirror` (cluster mode), `files` is this machine's scratch copy: each saved
        chunk and the finished video also go to the blob store, and a job starts by fetching
        what an earlier attempt (on any machine) saved there."""
        self._store = store
        self._files = files
        self._engine = engine
        self._metrics = metrics
        self._idle_poll_s = idle_poll_s
        self._mirror = mirror
        self._wake = asyncio.Event()
        self._running: _Running | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.trouble: str | None = None
        """Why the runner cannot go on (the store keeps failing); None while healthy."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="helios-job-runner")

    async def submitted(self, job_id: str) -> None:  # noqa: ARG002 (the protocol's shape)
        """`JobDispatch`: a job was admitted; this runner claims it from the store itself."""
        self.wake()

    @property
    def running_job(self) -> str | None:
        return None if self._running is None else self._running.job_id

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop at the next step; a job cut short goes back to the queue for the next start.

        The running job is asked to stop and given `grace_s` to get there, so no engine or
        encoder work is left running under the shutdown; only then is the task cancelled."""
        self._stopping = True
        self._wake.set()
        if self._running is not None:
            self._running.cancelled.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace_s)
        if not done:
            logger.warning("job runner: the running job did not stop in %.0f s; abandoned", grace_s)
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

    @property
    def healthy(self) -> bool:
        return self.trouble is None and self._task is not None and not self._task.done()

    async def _loop(self) -> None:
        """Claim and run jobs for ever: no error from the store, the files or a job ends it.
        While the store keeps failing (a full disk), back off and say so (`trouble`)."""
        delay = STORE_RETRY_FIRST_S
        while not self._stopping:
            try:
                job = await asyncio.to_thread(self._store.claim_next)
                if job is None:
                    if self._stopping:
                        break
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._idle_poll_s)
                else:
                    await self.run_claimed(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.trouble = "the job store fails (the server log says why)"
                logger.error(
                    "job runner: the job store fails; retrying in %.0f s", delay, exc_info=exc
                )
                await asyncio.sleep(delay)
                delay = min(STORE_RETRY_MAX_S, delay * 2)
            else:
                if self.trouble is not None:
                    logger.info("job runner: the job store works again")
                self.trouble = None
                delay = STORE_RETRY_FIRST_S

    async def run_claimed(self, job: Job) -> None:
        """Run a job already claimed (in_progress at `job.attempts`) to its end; a job cut
        short by `stop()` goes back to the queue, one taken over elsewhere is left alone."""
        running = _Running(job.id)
        self._running = running
        started = time.perf_counter()
        try:
            await self._generate_through_restarts(job, running)
        except (StreamCancelledError, asyncio.CancelledError) as exc:
            await asyncio.shield(self._after_cancel(job))
            if isinstance(exc, asyncio.CancelledError):
                raise
        except StaleAttemptError as exc:  # taken over elsewhere: that attempt owns the job now
            logger.warning("job %s: this attempt's write was refused: %s", job.id, exc.message)
            await asyncio.to_thread(self._files.remove, job.id)
        except StoreUnavailableError as exc:  # the job is not failed: its lease will expire
            logger.warning("job %s: the store went away (%s); left for recovery", job.id, exc)
            await asyncio.to_thread(self._files.remove, job.id)
        except JobNotFoundError:  # deleted while running: an expected race, not a failure
            logger.info("job %s was deleted while running; stopped", job.id)
            await asyncio.to_thread(self._files.remove, job.id)
        except Exception as exc:  # one job's failure must never stop the runner
            code = failure_code(exc)
            # the log gets the exception, the client a code and a sentence with no internals
            logger.warning("job %s failed (%s)", job.id, code, exc_info=exc)
            await self._finish_failed(job, code, safe_message(exc, code, job.id))
        else:
            elapsed = time.perf_counter() - started
            await self._finish_completed(job, elapsed, running.stats)
        finally:
            self._running = None

    async def _generate_through_restarts(self, job: Job, running: _Running) -> None:
        """`_generate`, again from the last saved chunk when the engine was restarted under it;
        a job that the engine fails on `MAX_ENGINE_RESTARTS` times fails (it may be the cause)."""
        for restarts in range(1, MAX_ENGINE_RESTARTS + 1):
            try:
                await self._generate(job, running)
                return
            except EngineRestartedError as exc:
                if restarts == MAX_ENGINE_RESTARTS or running.cancelled.is_set():
                    raise EngineFailedError(
                        f"the engine stopped or hung {restarts} times while making this video; "
                        "it is not tried again",
                        code="engine_failed",
                    ) from exc
                logger.warning("job %s: %s; resuming from its last saved chunk", job.id, exc)

    async def _generate(self, job: Job, running: _Running) -> None:
        """Make the job's chunks after its last saved one, then assemble the video."""
        spec, files = job.spec, self._files
        plan = plan_for(spec)
        if self._mirror is not None:
            await asyncio.to_thread(self._mirror.pull_all, job.id)
        resume = await asyncio.to_thread(files.resume_point, job.id, plan.first_chunk)
        start = plan.first_chunk if resume is None else resume[0] + 1
        state = None if resume is None else resume[1]
        if resume is not None:
            await asyncio.to_thread(self._store.mark_resumed, job.id, start, attempt=job.attempts)
            logger.info("job %s resumes at chunk %d of %d", job.id, start, plan.end_chunk)
            if self._metrics is not None:
                self._metrics.job_resumed()
        elif spec.extension is not None and spec.extension.mode == "state":
            state = await asyncio.to_thread(files.base_state, job.id, plan.first_chunk - 1)
        if start < plan.end_chunk:
            await self._make_chunks(job, plan, start, state, running)
        began = time.perf_counter()
        frames = await asyncio.to_thread(
            assemble, files, job.id, plan, spec.fps, extension=spec.extension is not None
        )
        running.stats.assemble_s = time.perf_counter() - began
        if frames != spec.delivered_frames:
            raise RuntimeError(f"assembled {frames} frames, expected {spec.delivered_frames}")
        if self._mirror is not None:
            await self._fenced(job)
            await asyncio.to_thread(self._mirror.push_final, job.id)

    async def _fenced(self, job: Job) -> None:
        """Before writing to the shared store: this attempt is still the job's latest (a
        paused worker that lost its job stops here instead of writing)."""
        await asyncio.to_thread(self._store.heartbeat, job.id, attempt=job.attempts)

    async def _make_chunks(
        self, job: Job, plan: JobPlan, start: int, state: bytes | None, running: _Running
    ) -> None:
        spec = job.spec
        continues_source = state is not None and start == plan.first_chunk
        request = await asyncio.to_thread(stream_request, self._files, job, state is not None)
        stream = await self._engine.open_stream(request, Priority.JOB, resume=state)
        try:
            if continues_source:  # an extension: the source's stream, with the new prompt
                await stream.set_prompt(spec.prompt)
            steps = [stream.steps_in_chunk(i) for i in range(plan.first_chunk, plan.end_chunk)]
            tracker = ProgressTracker(
                self._store,
                job.id,
                plan,
                steps,
                chunks_done=start - plan.first_chunk,
                attempt=job.attempts,
                on_lost=running.cancelled.set,
            )
            for index in range(start, plan.end_chunk):
                chunk = await stream.next_chunk(
                    tracker.on_step,
                    running.cancelled.is_set,
                    prefetch=index < plan.last_chunk,
                    checkpoint=True,
                )
                if chunk.checkpoint is None:
                    raise RuntimeError("the engine returned no checkpoint")
                saved = await asyncio.to_thread(
                    save_chunk,
                    self._files,
                    job.id,
                    plan,
                    index,
                    center_crop(chunk.frames, spec.output_size),
                    spec.fps,
                    chunk.checkpoint,
                    thumbnail=index == 0 and spec.extension is None,
                )
                if self._mirror is not None:
                    await self._fenced(job)
                    await asyncio.to_thread(
                        self._mirror.push_chunk,
                        job.id,
                        index,
                        trimmed=plan.is_trimmed(index),
                        thumbnail=index == 0 and spec.extension is None,
                    )
                await asyncio.to_thread(tracker.chunk_saved, index, chunk.timings)
                running.stats.add(chunk.timings, saved.seconds, chunk.extras)
                if self._metrics is not None:
                    self._metrics.observe_chunk(chunk.timings.total_s)
                    self._metrics.observe_checkpoint(saved.checkpoint_bytes, saved.seconds)
        finally:
            await stream.close()

    async def _after_cancel(self, job: Job) -> None:
        """Deleted → its files go; server stopping → it runs again after the restart (only if
        this attempt still owns it: a worker that lost the job must not queue it again)."""
        if self._stopping:
            with contextlib.suppress(HeliosError):
                await asyncio.to_thread(self._store.requeue, job.id, attempt=job.attempts)
                logger.info("job %s interrupted by shutdown: queued again", job.id)
                return
        logger.info("job %s cancelled", job.id)
        await asyncio.to_thread(self._files.remove, job.id)

    async def _retrying(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store or file write that must happen: retried with backoff while it fails (a full
        disk), saying so in `trouble`; a deleted job (`JobNotFoundError`) is not retried."""
        delay = STORE_RETRY_FIRST_S
        while True:
            try:
                result = await asyncio.to_thread(call, *args, **kwargs)
            except (JobNotFoundError, InvalidTransitionError):  # refusals, not faults: deleted,
                raise  # or (cluster) another attempt owns the job now
            except Exception as exc:
                self.trouble = "the job store fails (the server log says why)"
                logger.error("job runner: a write fails; retrying in %.0f s", delay, exc_info=exc)
                await asyncio.sleep(delay)
                delay = min(STORE_RETRY_MAX_S, delay * 2)
                continue
            self.trouble = None
            return result

    async def _finish_completed(self, job: Job, elapsed: float, stats: RunStats) -> None:
        try:
            digest = await asyncio.to_thread(self._files.sha256, job.id, VIDEO_NAME)
            await self._retrying(
                self._store.complete,
                job.id,
                VIDEO_NAME,
                round(elapsed, 3),
                job.spec.delivered_frames,
                video_sha256=digest,
                attempt=job.attempts,
                stats=stats.to_json(),
            )
        except JobNotFoundError:  # deleted while finishing: its files go too
            await asyncio.to_thread(self._files.remove, job.id)
        except InvalidTransitionError as exc:  # another attempt owns the result (cluster)
            logger.warning("job %s: late completion refused: %s", job.id, exc.message)
            await asyncio.to_thread(self._files.remove, job.id)
            return
        else:
            await self._drop_work(job.id)
        if self._metrics is not None:
            self._metrics.job_finished("completed")

    async def _finish_failed(self, job: Job, code: str, message: str) -> None:
        try:
            await self._retrying(self._store.fail, job.id, code, message, attempt=job.attempts)
        except JobNotFoundError:
            await asyncio.to_thread(self._files.remove, job.id)
        except InvalidTransitionError as exc:
            logger.warning("job %s: its failure was not recorded: %s", job.id, exc.message)
            await asyncio.to_thread(self._files.remove, job.id)
            return
        else:  # a failed job never runs again: its saved chunks are of no use
            await self._drop_work(job.id)
        if self._metrics is not None:
            self._metrics.job_finished("failed")

    async def _drop_work(self, job_id: str) -> None:
        """An ended job's working files go; in cluster mode this machine keeps none at all
        (the store has what stays)."""
        if self._mirror is None:
            await asyncio.to_thread(self._files.remove_work, job_id)
            return
        await asyncio.to_thread(self._mirror.remove_work, job_id)
        await asyncio.to_thread(self._files.remove, job_id)
