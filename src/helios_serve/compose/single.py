"""`helios serve`: one process on one machine — the engine, the job store (SQLite) and runner,
the sessions — assembled by `compose.app.build_app` and served by `web.server`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from helios_serve import __version__
from helios_serve.api.app import ApiConfig, ApiParts
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.engine import abort_engine, build_upscaler
from helios_serve.core.protocols import Engine
from helios_serve.engine.metrics import EngineMetrics
from helios_serve.engine.process import ProcessEngine
from helios_serve.engine.service import LocalEngine
from helios_serve.jobs.datadir import check_not_lost, database_is_new, open_store, sweep_orphans
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.metrics import JobMetrics
from helios_serve.jobs.models import JobNotFoundError
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.sqlite.store import JobStore
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.web.auth import Access
from helios_serve.web.server import HttpOptions, serve_forever

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 2
"""A job interrupted by a crash runs again once; a second crash fails it (`worker_lost`)."""


@dataclass(frozen=True)
class ServerOptions:
    data_dir: Path = Path("data")
    http: HttpOptions = field(default_factory=HttpOptions)
    access: Access = field(default_factory=Access)
    max_queue: int = 64
    max_sessions: int = 1
    emission_fps: float = 24.0
    session_idle_timeout_s: float = RealtimeConfig.idle_timeout_s
    sr_weights: Path | None = None
    ice_servers: tuple[dict[str, Any], ...] = ()
    """STUN/TURN servers for the sessions' peers (`--ice-server`); none by default."""


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
    return ApiParts(engine.info, engine.is_healthy, store, files, runner, registry)


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


def run_server(engine: Engine, options: ServerOptions, store: JobStore | None = None) -> int:
    """Serve until SIGINT/SIGTERM; a graceful stop exits 0 and leaves no job half-claimed.

    Shutdown order (the app's lifespan): sessions close, the job runner brings its job to a
    step boundary and queues it again, the engine finishes its step and stops, the store
    closes. Native work that could not be joined is abandoned, not finalized under."""
    try:
        parts = build_parts(engine, options.data_dir, store=store)
        if isinstance(engine, ProcessEngine):
            engine.on_restart = EngineMetrics(parts.registry).restarted
        info = engine.info
        realtime = RealtimeConfig(
            max_sessions=options.max_sessions,
            emission_fps=options.emission_fps,
            idle_timeout_s=options.session_idle_timeout_s,
            ice_servers=options.ice_servers,
            server_version=f"helios-serve {__version__}",
        )
        app = build_app(
            engine,
            jobs=JobApi(parts, ApiConfig(max_queue=options.max_queue)),
            sessions=Sessions(realtime, build_upscaler(info.device, options.sr_weights)),
            access=options.access,
            own_engine=True,
        )
    except BaseException:
        abort_engine(engine)
        raise
    tiny = ", tiny random weights: output is noise" if info.is_tiny else ""
    ready = (
        f"helios-serve ready: {options.http.url} (model {info.name}, {info.variant.value}{tiny})"
    )
    try:
        serve_forever(app, options.http, ready)
    except BaseException:
        abort_engine(engine)  # a no-op after a clean stop: the lifespan closed it
        raise
    finally:
        parts.store.close()
    print("helios-serve stopped", flush=True)  # noqa: T201
    if isinstance(engine, LocalEngine) and engine.abandoned_work:
        logging.shutdown()
        os._exit(0)
    return 0
