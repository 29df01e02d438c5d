"""`build_app`: the one app every process shape serves, assembled from parts.

`helios serve` is the engine, the job API and the sessions; a gateway is the job API (on the
queue) and the relays to its workers; a worker's session port is the sessions on its engine.
Whatever the parts, an app gets one `FastAPI()`, one error map (`web.errors`), auth installed
once (`web.auth`: the same keys and Origin rule everywhere), CORS once (`web.cors`), the pages
where browsers come, and one lifespan: the parts start in order and stop in reverse (the
engine first and last, then the extra lifecycles, the job dispatch, the sessions).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from helios_serve import __version__
from helios_serve.api.app import ApiConfig, ApiParts, install_job_api
from helios_serve.api.system import build_health_router, build_metrics_router
from helios_serve.core.protocols import Engine, Upscaler
from helios_serve.engine.process import ProcessEngine
from helios_serve.realtime.app_wiring import install_pages, install_realtime
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.reactor.registry import SessionRegistry
from helios_serve.realtime.slots import StreamHost
from helios_serve.web.auth import Access, install_auth
from helios_serve.web.cors import PathCors, is_closed
from helios_serve.web.errors import install_error_handlers
from helios_serve.web.origin import WRITES, CrossSiteGuard, Guarded
from helios_serve.web.responses import CompactJSONResponse

Lifecycle = Callable[[], AbstractAsyncContextManager[Any]]
"""Something that runs while the app serves: entered at start-up, left at shutdown."""


@dataclass(frozen=True)
class JobApi:
    """The job API's share of an app: its parts (store, files, dispatch) and its settings."""

    parts: ApiParts
    config: ApiConfig = field(default_factory=ApiConfig)


@dataclass(frozen=True)
class Sessions:
    """The real-time sessions' share of an app (on the app's engine)."""

    config: RealtimeConfig
    upscaler: Upscaler


def build_app(
    engine: Engine | None = None,
    jobs: JobApi | None = None,
    sessions: Sessions | None = None,
    *,
    access: Access = Access(),  # noqa: B008 (a frozen value)
    relays: Sequence[APIRouter] = (),
    lifecycles: Sequence[Lifecycle] = (),
    metrics: CollectorRegistry | None = None,
    pages: bool = True,
    own_engine: bool = False,
    title: str = "helios-serve",
) -> FastAPI:
    """The app of one process shape. With `own_engine` the app starts the engine's supervision
    with its loop and closes the engine last. `relays` are routers that answer for other
    processes (a gateway's); `metrics` serves `/metrics` where the job API does not. Reactor's
    session registry is `app.state.sessions` and the slot pool `app.state.slots` (or None)."""
    registry = None
    if sessions is not None:
        if engine is None:
            raise ValueError("sessions need an engine")
        registry = SessionRegistry(StreamHost.build(engine, sessions.config, sessions.upscaler))
    stages = list(lifecycles)
    if own_engine and engine is not None:
        stages.insert(0, lambda: _engine_running(engine))
    if jobs is not None:
        stages.append(lambda: _dispatching(jobs.parts))
    if registry is not None:
        stages.append(lambda: _closing_sessions(registry.shutdown))
    app = FastAPI(
        title=title,
        version=__version__,
        lifespan=_lifespan(stages),
        default_response_class=CompactJSONResponse,
    )
    install_error_handlers(app)  # one table for every route's errors
    install_auth(app, access)
    app.include_router(build_health_router())
    if jobs is not None:
        install_job_api(app, jobs.parts, jobs.config)
    elif metrics is not None:
        app.include_router(build_metrics_router(metrics))
    if registry is not None:
        install_realtime(app, registry)
    for router in relays:
        app.include_router(router)
    if pages:
        install_pages(app)
    _install_origin_rules(app, access)
    app.state.sessions = registry
    app.state.slots = None if registry is None else registry.host.slots
    return app


def _install_origin_rules(app: FastAPI, access: Access) -> None:
    """Who may call from a browser: the job API takes no cross-site writes and no
    cross-origin reads but from `--cors-origin`; Reactor's signalling is open to every origin
    (its SDK needs that), except on a worker's session port, where nothing is."""
    closed = (lambda _: True) if access.behind_gateway else is_closed
    guarded: Guarded = (
        (lambda _, path: path != "/health")
        if access.behind_gateway
        else (lambda method, path: method in WRITES and is_closed(path))
    )
    app.add_middleware(CrossSiteGuard, origins=access.cors_origins, guarded=guarded)
    app.add_middleware(PathCors, origins=access.cors_origins, closed=closed)


def _lifespan(
    stages: Sequence[Lifecycle],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Stops in reverse order: sessions close, the dispatch brings its job to a step
        # boundary (and queues it again), the extra lifecycles end, then the engine stops.
        async with AsyncExitStack() as stack:
            for stage in stages:
                await stack.enter_async_context(stage())
            yield

    return lifespan


@asynccontextmanager
async def _engine_running(engine: Engine) -> AsyncIterator[None]:
    if isinstance(engine, ProcessEngine):
        await engine.start()
    try:
        yield
    finally:
        await engine.close()


@asynccontextmanager
async def _dispatching(parts: ApiParts) -> AsyncIterator[None]:
    parts.runner.start()
    try:
        yield
    finally:
        await parts.runner.stop()


@asynccontextmanager
async def _closing_sessions(shutdown: Callable[[], Any]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await shutdown()
