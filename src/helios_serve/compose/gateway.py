"""`helios gateway`: the HTTP API of a cluster, with no model. Run any number behind any load
balancer: every request is answered from PostgreSQL and the blob store, so any gateway can
answer for a job another one created; Reactor's session signalling and the WebSocket stream
are relayed to the worker that runs the session (`cluster.session_proxy`, `cluster.ws_relay`).

The app is `compose.app.build_app`'s, like `helios serve`'s: the job API (dispatching to the
queue), the relays, the pages, auth and one lifespan (the queue's client, the cluster upkeep,
the worker watch). The served model's description (sizes, presets: what requests are checked
against) comes from the workers' registry; a gateway that starts before any worker ever ran
waits for the first one. `/ready` is 200 while at least one worker is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from helios_serve.api.app import ApiConfig, ApiParts
from helios_serve.cluster.health import WorkersCollector, WorkerWatch, wait_for_model
from helios_serve.cluster.maintenance import Maintenance, Upkeep
from helios_serve.cluster.registry import WorkerRegistry
from helios_serve.cluster.session_proxy import SessionProxy, build_session_router
from helios_serve.cluster.ws_relay import build_ws_relay
from helios_serve.compose.app import JobApi, build_app
from helios_serve.core.spec import ModelInfo
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.mirror import JobMirror
from helios_serve.jobs.postgres.queue import QueueDispatch, build_queue_app
from helios_serve.jobs.postgres.store import PostgresJobStore
from helios_serve.jobs.storage import open_blob_store
from helios_serve.web.auth import Access
from helios_serve.web.server import HttpOptions, serve_forever

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayOptions:
    database: str
    storage: str
    data_dir: Path
    http: HttpOptions = field(default_factory=HttpOptions)
    access: Access = field(default_factory=Access)
    max_queue: int = 64
    upkeep: Upkeep = field(default_factory=Upkeep)


def build_gateway(options: GatewayOptions, store: PostgresJobStore, info: ModelInfo) -> FastAPI:
    """The gateway's app on `store` (closed by the caller), serving `info`'s model."""
    queue = build_queue_app(options.database)
    workers = WorkerRegistry(store.pool)
    watch = WorkerWatch(workers, options.upkeep)
    files = JobFiles(options.data_dir / "cache")
    mirror = JobMirror(files, open_blob_store(options.storage, options.data_dir))
    registry = CollectorRegistry()
    registry.register(WorkersCollector(watch))
    dispatch = QueueDispatch(queue)
    parts = ApiParts(info, watch.healthy, store, files, dispatch, registry, mirror)
    proxy = SessionProxy(workers, options.upkeep.worker_timeout_s)
    maintenance = Maintenance(queue, store, options.upkeep)
    return build_app(
        jobs=JobApi(parts, ApiConfig(max_queue=options.max_queue)),
        access=options.access,
        relays=(
            build_session_router(proxy),
            build_ws_relay(workers, options.upkeep.worker_timeout_s),
        ),
        lifecycles=(
            queue.open_async,
            maintenance.running,
            watch.running,
            lambda: contextlib.aclosing(proxy),
        ),
        title="helios-serve gateway",
    )


def run_gateway(options: GatewayOptions) -> int:
    """Serve until SIGINT/SIGTERM."""
    store = PostgresJobStore(options.database)
    started = time.monotonic()
    try:
        info = asyncio.run(wait_for_model(WorkerRegistry(store.pool)))
        app = build_gateway(options, store, info)
        ready = f"helios gateway ready: {options.http.url} (model {info.name})"
        serve_forever(app, options.http, ready)
    finally:
        store.close()
    logger.info("gateway stopped after %.0f s", time.monotonic() - started)
    return 0
