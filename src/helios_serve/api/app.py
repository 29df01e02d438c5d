"""install_job_api: the job API's routes, auth and metrics on an app `serve.build_app` makes.

The parts are built outside (`serve.build_parts`; tests inject their own); their lifecycle
(the runner's start and stop) is the composition root's, not this module's."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from helios_serve.api.auth import install_auth
from helios_serve.api.system import StoreCollector, build_system_router
from helios_serve.api.videos.defaults import video_defaults
from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS, RequestLimits
from helios_serve.api.videos.router import build_router
from helios_serve.api.videos.service import VideosService
from helios_serve.core.protocols import Engine
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.store import JobStore

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


def install_job_api(app: FastAPI, parts: ApiParts, config: ApiConfig) -> None:
    """`/v1/videos`, `/health`, `/ready`, `/metrics` and the API-key check on `app`."""
    model = parts.engine.info
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
