"""Composition root: config → engine → job store and runner → app → uvicorn.

`build_app` is the one place an app is assembled, for `helios serve` and for the tests: the
job API and the real-time sessions each add routes, and their lifecycles nest in one lifespan
(engine outermost, then the job runner, then the sessions)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from helios_serve import __version__
from helios_serve.api.app import ApiConfig, ApiParts, install_job_api
from helios_serve.core.protocols import Engine
from helios_serve.engine.metrics import EngineMetrics
from helios_serve.engine.process import ProcessEngine
from helios_serve.engine.service import LocalEngine
from helios_serve.engine.sr import SpandrelUpscaler, TorchResampler, Upscaler
from helios_serve.jobs.datadir import (
    check_not_lost,
    database_is_new,
    open_store,
    sweep_orphans,
)
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.metrics import JobMetrics
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.store import JobNotFoundError, JobStore
from helios_serve.realtime.app_wiring import install_realtime
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.driver import Upscaler as SessionUpscaler
from helios_serve.realtime.manager import SessionManager
from helios_serve.web.errors import install_error_handlers
from helios_serve.web.http_protocol import HeadDeadlineProtocol
from helios_serve.web.responses import CompactJSONResponse

if TYPE_CHECKING:
    from helios_serve.cluster.worker import WorkerOptions

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 2
"""A job interrupted by a crash runs again once; a second crash fails it (`worker_lost`)."""


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    served_model_name: str | None = None
    api_keys: tuple[str, ...] = ()
    max_queue: int = 64
    max_sessions: int = 1
    emission_fps: float = 24.0
    sr_weights: Path | None = None
    cors_origins: tuple[str, ...] = ()
    max_connections: int = 256
    session_idle_timeout_s: float = RealtimeConfig.idle_timeout_s


def prepare_store(data_dir: Path) -> JobStore:
    """Open the job store and bring the data directory to a clean state after any crash.

    Runs before the model loads, so an unusable folder or database is one line at once
    (`DataDirError`) rather than after minutes of loading."""
    new = database_is_new(data_dir)
    store = open_store(data_dir)
    try:
        _recover(store, JobFiles(data_dir / "videos"), new)
    except BaseException:
        store.close()
        raise
    return store


def build_parts(
    engine: Engine, data_dir: Path, idle_poll_s: float = 1.0, store: JobStore | None = None
) -> ApiParts:
    """The job store (`prepare_store`'s unless given) and the runner around `engine`."""
    store = store or prepare_store(data_dir)
    files = JobFiles(data_dir / "videos")
    registry = CollectorRegistry()
    runner = JobRunner(store, files, engine, JobMetrics(registry), idle_poll_s=idle_poll_s)
    return ApiParts(engine=engine, store=store, files=files, runner=runner, registry=registry)


def _recover(store: JobStore, files: JobFiles, database_was_new: bool) -> None:
    check_not_lost(store, files, database_was_new)
    store.quarantine_unreadable()
    report = store.recover_after_restart(MAX_ATTEMPTS)
    if report.requeued or report.failed:
        logger.warning(
            "recovered after a restart: %d jobs queued again, %d failed (worker_lost)",
            report.requeued,
            report.failed,
        )
    swept = files.sweep_temp()
    if swept:
        logger.info("removed %d partial files left by an interrupted run", swept)
    _drop_finished_work(store, files)
    sweep_orphans(store, files)


def _drop_finished_work(store: JobStore, files: JobFiles) -> None:
    """Chunk segments of jobs that ended (a crash came between their end and the cleanup)."""
    for job_id in files.job_ids_with_work():
        try:
            finished = store.get(job_id).status.is_terminal
        except JobNotFoundError:
            finished = True  # deleted: the sweep of orphan folders is not this one's job
        if finished:
            files.remove_work(job_id)


def build_upscaler(device: str, sr_weights: Path | None) -> Upscaler:
    """Session super-resolution on the model's device: a real network when given, else bicubic."""
    import torch

    if sr_weights is not None:
        return SpandrelUpscaler(sr_weights, torch.device(device))
    return TorchResampler(torch.device(device))


@dataclass(frozen=True)
class JobApi:
    """The job API's share of an app: its parts (store, files, runner) and its settings."""

    parts: ApiParts
    config: ApiConfig = field(default_factory=ApiConfig)


@dataclass(frozen=True)
class Sessions:
    """The real-time sessions' share of an app."""

    config: RealtimeConfig
    upscaler: SessionUpscaler
    cors_origins: tuple[str, ...] = ()


def build_app(
    engine: Engine,
    jobs: JobApi | None = None,
    sessions: Sessions | None = None,
    own_engine: bool = False,
) -> FastAPI:
    """The app around `engine`: the job API and/or the real-time sessions, one error map, and
    one lifespan. With `own_engine` the app also starts the engine's supervision with its
    loop and closes the engine last. The session manager is `app.state.sessions` (or None)."""
    manager = SessionManager(engine, sessions.config, sessions.upscaler) if sessions else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Stops in reverse order: sessions close, the runner brings its job to a step
        # boundary, then the engine stops.
        async with AsyncExitStack() as stack:
            if own_engine:
                if isinstance(engine, ProcessEngine):
                    await engine.start()
                stack.push_async_callback(engine.close)
            if jobs is not None:
                jobs.parts.runner.start()
                stack.push_async_callback(jobs.parts.runner.stop)
            if manager is not None:
                stack.push_async_callback(manager.shutdown)
            yield

    app = FastAPI(
        title="helios-serve",
        version=__version__,
        lifespan=lifespan,
        default_response_class=CompactJSONResponse,
    )
    install_error_handlers(app)  # one table for the job API's and the sessions' errors
    if jobs is not None:
        install_job_api(app, jobs.parts, jobs.config)
    if sessions is not None and manager is not None:
        install_realtime(app, manager, sessions.cors_origins)
    app.state.sessions = manager
    return app


def run_server(engine: Engine, options: ServerOptions, store: JobStore | None = None) -> int:
    """Serve until SIGINT/SIGTERM; a graceful stop exits 0 and leaves no job half-claimed."""
    try:
        return _serve(engine, options, build_parts(engine, options.data_dir, store=store))
    except BaseException:
        abort_engine(engine)  # a no-op after a clean stop: the lifespan closed it
        raise


def abort_engine(engine: Engine) -> None:
    """Stop an engine whose server never started (its child would keep this process alive)."""
    if isinstance(engine, ProcessEngine):
        engine.abort()


def _serve(engine: Engine, options: ServerOptions, parts: ApiParts) -> int:
    import uvicorn

    info = engine.info
    if isinstance(engine, ProcessEngine):
        metrics = EngineMetrics(parts.registry)
        engine.on_restart = metrics.restarted
    api = ApiConfig(
        api_keys=options.api_keys, cors_origins=options.cors_origins, max_queue=options.max_queue
    )
    realtime = RealtimeConfig(
        max_sessions=options.max_sessions,
        emission_fps=options.emission_fps,
        idle_timeout_s=options.session_idle_timeout_s,
        server_version=f"helios-serve {__version__}",
    )
    upscaler = build_upscaler(info.device, options.sr_weights)
    app = build_app(
        engine,
        jobs=JobApi(parts, api),
        sessions=Sessions(realtime, upscaler, options.cors_origins),
        own_engine=True,
    )
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="info",
        http=HeadDeadlineProtocol,  # a request head must arrive in time (slowloris)
        limit_concurrency=options.max_connections,  # beyond: 503, before descriptors run out
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=64 * 1024,  # request line and headers: 64 KiB at most
    )
    url = f"http://{options.host}:{options.port}"

    class AnnouncingServer(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: object = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                tiny = ", tiny random weights: output is noise" if info.is_tiny else ""
                print(
                    f"helios-serve ready: {url} (model {info.name}, {info.variant.value}{tiny})",
                    flush=True,
                )

        def handle_exit(self, sig: int, frame: object) -> None:
            # A graceful stop is a clean exit (code 0): don't re-raise the signal afterwards.
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    # Shutdown order (the nested lifespans): sessions close, the job runner brings its job to
    # a step boundary and queues it again, the engine finishes its step and stops, the store
    # closes. Native work that could not be joined is abandoned, not finalized under.
    try:
        AnnouncingServer(config).run()
    finally:
        parts.store.close()
    print("helios-serve stopped", flush=True)
    if isinstance(engine, LocalEngine) and engine.abandoned_work:
        logging.shutdown()
        os._exit(0)
    return 0


def run_worker(engine: Engine, options: WorkerOptions) -> int:
    """`helios worker`: the engine behind a queue of a cluster (see `cluster.worker`)."""
    import asyncio

    from helios_serve.cluster.worker import serve_worker

    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    sessions = None
    if options.session_port is not None:  # Reactor's routes on this worker's engine
        realtime = RealtimeConfig(
            max_sessions=options.max_sessions, server_version=f"helios-serve {__version__}"
        )
        upscaler = build_upscaler(engine.info.device, None)
        # the engine's lifecycle is `main`'s below (it outlives the session port)
        sessions = build_app(engine, sessions=Sessions(realtime, upscaler))
        _serve_metrics(sessions, registry)

    async def main() -> int:
        if isinstance(engine, ProcessEngine):
            await engine.start()
        try:
            return await serve_worker(engine, options, session_app=sessions, metrics=metrics)
        finally:
            await engine.close()

    code = asyncio.run(main())
    print("helios worker stopped", flush=True)
    return code


def _serve_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    """A worker's own Prometheus metrics (chunk time, checkpoint size and time, resumes)."""
    from fastapi.responses import Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
