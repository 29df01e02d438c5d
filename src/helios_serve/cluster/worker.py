"""`helios worker`: one per GPU. Takes video jobs from the queue and runs them on its engine.

A task from the queue names a video; `JobRecords.take` turns it into this worker's attempt
(a new one when the job's last worker was lost: it resumes from the last chunk saved in the
blob store). While the job runs, a heartbeat writes the record every `heartbeat_s`, fenced by
the attempt: when the record is deleted (`DELETE` on any gateway) or another attempt owns it
(this worker was paused past its lease), the job stops at its next step and writes nothing
more. The engine and the session port are given (`compose.worker` builds them); this module
never imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import procrastinate

from helios_serve.cluster.maintenance import Maintenance, Upkeep
from helios_serve.cluster.registry import WorkerRegistry
from helios_serve.core.protocols import Engine
from helios_serve.errors import HeliosError
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.metrics import JobMetrics
from helios_serve.jobs.mirror import JobMirror
from helios_serve.jobs.models import InvalidTransitionError, Job, JobNotFoundError, JobStatus
from helios_serve.jobs.postgres.queue import VIDEO_TASK, VIDEOS_QUEUE, build_queue_app
from helios_serve.jobs.postgres.store import PostgresJobStore
from helios_serve.jobs.records import StoreUnavailableError
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.storage import open_blob_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    name: str
    database: str
    storage: str
    data_dir: Path
    upkeep: Upkeep = field(default_factory=Upkeep)
    heartbeat_s: float = 2.0
    session_host: str = "127.0.0.1"
    session_port: int | None = None
    """Where this worker serves real-time sessions (gateways relay their signalling here; the
    media flows between this worker and the client). None: jobs only."""
    max_sessions: int = 1
    session_token: str = field(default="", repr=False)
    """The session port's credential, registered for the gateways (`compose.worker` makes a
    random one per start): the port answers nobody else but holders of `--api-key`."""

    @property
    def session_url(self) -> str | None:
        if self.session_port is None:
            return None
        return f"http://{self.session_host}:{self.session_port}"


class VideoWorker:
    """The queue task's body and the worker's own heartbeat."""

    def __init__(
        self,
        options: WorkerOptions,
        store: PostgresJobStore,
        runner: JobRunner,
        registry: WorkerRegistry,
        mirror: JobMirror,
    ) -> None:
        self._options = options
        self._store = store
        self._runner = runner
        self._registry = registry
        self._mirror = mirror

    async def run_video(self, video_id: str) -> None:
        """The queue handed us `video_id`: take it (or learn there is nothing to do), run it."""
        upkeep = self._options.upkeep
        job = await asyncio.to_thread(
            self._store.take, video_id, upkeep.max_attempts, lease_s=upkeep.worker_timeout_s
        )
        if job is None:
            logger.info("job %s: finished, deleted or running elsewhere; nothing to do", video_id)
            return
        if job.status is JobStatus.FAILED:
            logger.warning("job %s: out of attempts; failed (%s)", job.id, job.error_code)
            with contextlib.suppress(HeliosError):
                await asyncio.to_thread(self._mirror.remove_work, job.id)
            return
        logger.info("job %s: attempt %d on %s", job.id, job.attempts, self._options.name)
        beat = asyncio.create_task(self._heartbeat(job), name=f"helios-heartbeat-{job.id}")
        try:
            await self._runner.run_claimed(job)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)

    async def _heartbeat(self, job: Job) -> None:
        """Keep the record's lease while the job runs; stop the job once it is not ours."""
        while True:
            await asyncio.sleep(self._options.heartbeat_s)
            try:
                await asyncio.to_thread(self._store.heartbeat, job.id, attempt=job.attempts)
            except StoreUnavailableError:
                continue  # the lease runs on; the database may be back before it ends
            except (JobNotFoundError, InvalidTransitionError) as exc:
                if self._runner.cancel(job.id):  # still running here (not just finishing)
                    logger.warning("job %s: no longer this worker's (%s); stopping it", job.id, exc)
                return

    async def beat_registry(self) -> None:
        while True:
            with contextlib.suppress(StoreUnavailableError):
                running = self._runner.running_job
                await asyncio.to_thread(self._registry.heartbeat, self._options.name, running)
            await asyncio.sleep(self._options.heartbeat_s)


async def serve_worker(
    engine: Engine,
    options: WorkerOptions,
    *,
    store: PostgresJobStore | None = None,
    stop: asyncio.Event | None = None,
    delete_finished_tasks: bool = True,
    metrics: JobMetrics | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set): a job cut short goes back to the queue for
    another worker. `store` may be given (benchmarks time its calls); it is closed here. The
    session port, when `options` has one, is the caller's to serve (`compose.worker`)."""
    if store is None:
        store = await asyncio.to_thread(PostgresJobStore, options.database)
    scratch = options.data_dir / "videos"
    shutil.rmtree(scratch, ignore_errors=True)  # a scratch copy: the blob store has the truth
    files = JobFiles(scratch)
    mirror = JobMirror(files, open_blob_store(options.storage, options.data_dir))
    runner = JobRunner(store, files, engine, metrics, mirror=mirror)
    registry = WorkerRegistry(store.pool)
    await asyncio.to_thread(
        registry.register,
        options.name,
        engine.info,
        options.session_url,
        options.max_sessions if options.session_url is not None else 0,
        options.session_token or None,
    )
    worker = VideoWorker(options, store, runner, registry, mirror)
    app = build_queue_app(options.database)
    app.task(name=VIDEO_TASK, queue=VIDEOS_QUEUE)(worker.run_video)
    try:
        async with app.open_async():
            stopping = stop or _signalled()
            delete = "successful" if delete_finished_tasks else "never"
            await _work(app, worker, runner, store, options, engine.info.name, stopping, delete)
    finally:
        with contextlib.suppress(HeliosError):
            await asyncio.to_thread(registry.sign_off, options.name)
        await asyncio.to_thread(store.close)
    return 0


async def _work(
    app: procrastinate.App,
    worker: VideoWorker,
    runner: JobRunner,
    store: PostgresJobStore,
    options: WorkerOptions,
    model_name: str,
    stop: asyncio.Event,
    delete_tasks: str,
) -> None:
    maintenance = Maintenance(app, store, options.upkeep)
    maintenance.start()
    beats = asyncio.create_task(worker.beat_registry(), name="helios-worker-heartbeat")
    queue = asyncio.create_task(_take_tasks(app, options, delete_tasks), name="helios-queue-worker")
    print(f"helios worker ready: {options.name} (model {model_name})", flush=True)  # noqa: T201 (the ready line)
    await asyncio.wait(
        [queue, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    await runner.stop()  # the running job stops at its next step and is queued again
    for _ in range(600):  # until its attempt is put back (a step of a real model: seconds)
        if runner.running_job is None:
            break
        await asyncio.sleep(0.1)
    for task in (queue, beats):
        task.cancel()
    await asyncio.gather(queue, beats, return_exceptions=True)
    await maintenance.stop()


def _signalled() -> asyncio.Event:
    """Set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _take_tasks(app: procrastinate.App, options: WorkerOptions, delete_tasks: str) -> None:
    """procrastinate's worker, run again whenever it stops on an error (it stops when the
    database goes away: this worker waits for it to come back instead of exiting)."""
    while True:
        try:
            await app.run_worker_async(
                queues=[VIDEOS_QUEUE],
                name=options.name,
                concurrency=1,
                install_signal_handlers=False,
                update_heartbeat_interval=options.heartbeat_s,
                stalled_worker_timeout=options.upkeep.worker_timeout_s,
                delete_jobs=delete_tasks,
            )
        except Exception as exc:
            logger.warning("the queue worker stopped (%s); starting it again", exc)
        await asyncio.sleep(1.0)
