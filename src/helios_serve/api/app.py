"""install_job_api: the job API's routes and metrics on an app `compose.app.build_app` makes.

The parts are built outside (`compose.single.build_parts`, a gateway's own; tests inject
theirs); their lifecycle (the dispatch's start and stop), the app's auth and its error map are
the composition root's, not this module's."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from helios_serve.api.system import StoreCollector, build_system_router
from helios_serve.api.videos.defaults import video_defaults
from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS, RequestLimits
from helios_serve.api.videos.router import build_router
from helios_serve.api.videos.service import VideosService
from helios_serve.core.spec import ModelInfo
from helios_serve.jobs.dispatch import JobDispatch
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.mirror import JobMirror
from helios_serve.jobs.records import JobRecords


@dataclass
class ApiConfig:
    max_queue: int = 64
    limits: RequestLimits = field(default_factory=lambda: DEFAULT_REQUEST_LIMITS)


@dataclass
class ApiParts:
    """What the job API is built around; the composition root makes them, tests their own."""

    model: ModelInfo
    """The served model: what requests are checked against."""
    healthy: Callable[[], bool]
    """Whether something can run jobs now (the engine, or in a cluster a live worker)."""
    store: JobRecords
    files: JobFiles
    runner: JobDispatch
    registry: CollectorRegistry
    mirror: JobMirror | None = None
    """Cluster mode: the blob store behind `files` (see `VideosService`)."""


def _ready(parts: ApiParts) -> bool:
    """Ready: something can run jobs and the dispatch can go on (its store works)."""
    return parts.healthy() and parts.runner.trouble is None


def install_job_api(app: FastAPI, parts: ApiParts, config: ApiConfig) -> None:
    """`/v1/videos`, `/health`, `/ready`, `/v1/models` and `/metrics` on `app`."""
    model = parts.model
    parts.registry.register(StoreCollector(parts.store))
    service = VideosService(
        parts.store,
        parts.files,
        parts.runner,
        model,
        config.max_queue,
        config.limits,
        parts.mirror,
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
