"""create_app: the HTTP app around already-built parts (tests inject their own)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from helios_serve import __version__
from helios_serve.api.auth import install_auth
from helios_serve.api.system import StoreCollector, build_system_router
from helios_serve.api.videos.defaults import video_defaults
from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS, RequestLimits
from helios_serve.api.videos.router import build_router
from helios_serve.api.videos.service import VideosService
from helios_serve.core.protocols import Engine
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.models import JobNotFoundError
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.store import JobStore
from helios_serve.web.errors import install_error_handlers
from helios_serve.web.responses import CompactJSONResponse

logger = logging.getLogger(__name__)


@dataclass
class ApiConfig:
    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_queue: int = 64
    limits: RequestLimits = field(default_factory=lambda: DEFAULT_REQUEST_LIMITS)


@dataclass
class ApiParts:
    """What the app is built around; `serve.py` makes them, tests make their own."""

    engine: Engine
    store: JobStore
    files: JobFiles
    runner: JobRunner
    registry: CollectorRegistry


def _ready(parts: ApiParts) -> bool:
    """Ready: the engine answers and the job runner can go on (its store works)."""
    return parts.engine.is_healthy() and parts.runner.trouble is None


def create_app(parts: ApiParts, config: ApiConfig) -> FastAPI:
    """The app: routes, error envelope, auth; the runner starts and stops with it."""
    model = parts.engine.info

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        parts.runner.start()
        try:
            yield
        finally:
            await parts.runner.stop()

    app = FastAPI(
        title="helios-serve",
        version=__version__,
        lifespan=lifespan,
        default_response_class=CompactJSONResponse,
    )
    install_error_handlers(app, {JobNotFoundError: 404})
    install_auth(app, config.api_keys, config.cors_origins)
    parts.registry.register(StoreCollector(parts.store))
    service = VideosService(
        parts.store, parts.files, parts.runner, model, config.max_queue, config.limits
    )
    app.include_router(build_router(service, model, config.limits))
    app.include_router(
        build_system_router(
            model,
            int(time.time()),
            parts.registry,
            lambda: _ready(parts),
            video_defaults(model, config.limits),
        )
    )
    return app
