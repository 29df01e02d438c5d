"""`helios gateway`: the HTTP API of a cluster, with no model. Run any number behind any load
balancer: every request is answered from PostgreSQL and the blob store, so any gateway can
answer for a job another one created; Reactor's session signalling is relayed to the worker
that runs the session (`session_proxy`).

The served model's description (sizes, presets: what requests are checked against) comes from
the workers' registry; a gateway that starts before any worker ever ran waits for the first
one. `/ready` is 200 while at least one worker is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procrastinate
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from helios_serve import __version__
from helios_serve.api.app import ApiConfig, ApiParts, install_job_api
from helios_serve.cluster.maintenance import Maintenance, Upkeep
from helios_serve.cluster.pg_store import PostgresJobStore
from helios_serve.cluster.queue import QueueDispatch, build_queue_app
from helios_serve.cluster.registry import WorkerRegistry
from helios_serve.cluster.session_proxy import SessionProxy, build_session_router
from helios_serve.cluster.storage import open_blob_store
from helios_serve.cluster.ws_relay import build_ws_relay
from helios_serve.core.protocols import Priority, Stream
from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.errors import HeliosError
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.mirror import JobMirror
from helios_serve.web.cors import PathCors
from helios_serve.web.errors import install_error_handlers
from helios_serve.web.responses import CompactJSONResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayOptions:
    database: str
    storage: str
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()
    max_queue: int = 64
    cors_origins: tuple[str, ...] = ()
    upkeep: Upkeep = field(default_factory=Upkeep)


class NoLocalEngineError(HeliosError):
    code = "model_not_ready"


class WorkersEngine:
    """The `Engine` a gateway's API sees: the workers' model, healthy while one is alive.
    Streams are never opened here (jobs reach workers through the queue)."""

    def __init__(self, info: ModelInfo) -> None:
        self._info = info
        self.workers_alive = 0

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def open_stream(
        self, request: StreamRequest, priority: Priority, resume: bytes | None = None
    ) -> Stream:
        raise NoLocalEngineError("a gateway runs no model; jobs run on the workers")

    def is_healthy(self) -> bool:
        return self.workers_alive > 0

    async def close(self) -> None:
        return None


class ClusterCollector(Collector):
    """Workers alive and jobs resumed, read from PostgreSQL at scrape time."""

    def __init__(self, engine: WorkersEngine, store: PostgresJobStore) -> None:
        self._engine = engine
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        alive = GaugeMetricFamily("helios_workers_alive", "Workers heard from within the lease.")
        alive.add_metric([], self._engine.workers_alive)
        yield alive
        with contextlib.suppress(HeliosError):
            resumed = GaugeMetricFamily(
                "helios_jobs_resumed_from_checkpoint",
                "Jobs whose latest attempt continued from a saved chunk (any worker).",
            )
            resumed.add_metric([], self._store.count_resumed())
            yield resumed


async def wait_for_model(registry: WorkerRegistry, poll_s: float = 1.0) -> ModelInfo:
    announced = False
    while True:
        with contextlib.suppress(HeliosError):
            info = await asyncio.to_thread(registry.model_info)
            if info is not None:
                return info
        if not announced:
            logger.info("waiting for a worker to register the model")
            announced = True
        await asyncio.sleep(poll_s)


def build_gateway(
    options: GatewayOptions,
    store: PostgresJobStore,
    queue: procrastinate.App,
    info: ModelInfo,
) -> FastAPI:
    engine = WorkersEngine(info)
    files = JobFiles(options.data_dir / "cache")
    mirror = JobMirror(files, open_blob_store(options.storage, options.data_dir))
    registry = CollectorRegistry()
    parts = ApiParts(engine, store, files, QueueDispatch(queue), registry, mirror)
    config = ApiConfig(
        api_keys=options.api_keys, max_queue=options.max_queue, cors_origins=options.cors_origins
    )
    app = FastAPI(
        title="helios-serve gateway",
        version=__version__,
        lifespan=_dispatch_lifespan(parts),
        default_response_class=CompactJSONResponse,
    )
    install_error_handlers(app)  # the same error map as `helios serve`
    install_job_api(app, parts, config)
    registry.register(ClusterCollector(engine, store))
    workers = WorkerRegistry(store.pool)
    proxy = SessionProxy(workers, options.upkeep.worker_timeout_s)
    app.include_router(build_session_router(proxy))
    app.include_router(build_ws_relay(workers, options.upkeep.worker_timeout_s))
    app.add_middleware(PathCors, origins=options.cors_origins)  # as `helios serve` does
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        maintenance = Maintenance(queue, store, options.upkeep)
        watch = asyncio.create_task(_watch_workers(engine, workers, options.upkeep))
        async with queue.open_async():
            maintenance.start()
            try:
                async with inner(a) as state:
                    yield state
            finally:
                watch.cancel()
                await maintenance.stop()
                await proxy.close()

    app.router.lifespan_context = lifespan
    return app


def _dispatch_lifespan(parts: ApiParts) -> Any:
    """The job dispatch (the queue's client) starts and stops with the app."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        parts.runner.start()
        try:
            yield
        finally:
            await parts.runner.stop()

    return lifespan


async def _watch_workers(engine: WorkersEngine, workers: WorkerRegistry, upkeep: Upkeep) -> None:
    while True:
        try:
            engine.workers_alive = await asyncio.to_thread(workers.alive, upkeep.worker_timeout_s)
        except HeliosError:
            engine.workers_alive = 0  # the database is away: nothing can run
        await asyncio.sleep(min(1.0, upkeep.interval_s))


def run_gateway(options: GatewayOptions) -> int:
    """Serve until SIGINT/SIGTERM."""
    import uvicorn

    store = PostgresJobStore(options.database)
    info = asyncio.run(wait_for_model(WorkerRegistry(store.pool)))
    queue = build_queue_app(options.database)
    app = build_gateway(options, store, queue, info)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="info")
    url = f"http://{options.host}:{options.port}"

    class AnnouncingServer(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: object = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                print(f"helios gateway ready: {url} (model {info.name})", flush=True)

    started = time.monotonic()
    try:
        AnnouncingServer(config).run()
    finally:
        store.close()
    logger.info("gateway stopped after %.0f s", time.monotonic() - started)
    return 0
