"""/health, /ready, /v1/models and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from helios_serve import __version__
from helios_serve.core.spec import ModelInfo
from helios_serve.jobs.records import JobRecords
from helios_serve.web.errors import readiness_status
from helios_serve.web.responses import CompactJSONResponse


class StoreCollector(Collector):
    """Queue depth and jobs by status, read from the store at scrape time."""

    def __init__(self, store: JobRecords) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._store.count_by_status()
        depth = GaugeMetricFamily("helios_queue_depth", "Jobs waiting for the engine.")
        depth.add_metric([], self._store.queue_depth())
        yield depth
        by_status = GaugeMetricFamily(
            "helios_jobs", "Jobs in the store by status.", labels=["status"]
        )
        for status, count in counts.items():
            by_status.add_metric([status.value], count)
        yield by_status
        resumed = GaugeMetricFamily(
            "helios_jobs_resumed_from_checkpoint",
            "Jobs whose latest attempt continued from a saved chunk (any worker).",
        )
        resumed.add_metric([], self._store.count_resumed())
        yield resumed


def build_system_router(
    model: ModelInfo,
    created: int,
    registry: CollectorRegistry,
    engine_healthy: Callable[[], bool],
    video_defaults: Mapping[str, Any] | None = None,
) -> APIRouter:
    """`video_defaults` (what a bare create request gets) rides along in `/v1/models`."""
    router = APIRouter()

    @router.get("/ready")
    async def ready() -> Response:
        ok = engine_healthy()
        body = {
            "status": "ready" if ok else "unavailable",
            "model": model.name,
            "variant": model.variant.value,
            "device": model.device,
            "tiny": model.is_tiny,
        }
        return CompactJSONResponse(body, status_code=readiness_status(ok))

    @router.get("/v1/models")
    async def models() -> Response:
        ids = [model.name, *model.aliases]
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "helios-serve",
                "variant": model.variant.value,
                "tiny": model.is_tiny,
                **({"video_defaults": video_defaults} if video_defaults is not None else {}),
            }
            for name in ids
        ]
        return CompactJSONResponse({"object": "list", "data": data})

    router.include_router(build_metrics_router(registry))

    return router


def build_metrics_router(registry: CollectorRegistry) -> APIRouter:
    """`/metrics`: the registry in Prometheus' text format."""
    router = APIRouter()

    @router.get("/metrics")
    async def metrics() -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


def build_health_router() -> APIRouter:
    """`/health`, on every process shape: liveness (the engine may still be down: `/ready`)."""
    router = APIRouter()

    @router.get("/health")
    async def health() -> Response:
        return CompactJSONResponse({"status": "ok", "version": __version__})

    return router
