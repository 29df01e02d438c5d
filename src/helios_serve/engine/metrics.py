"""Prometheus metrics of the engine process's supervision."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            "helios_engine_restarts",
            "Times the engine process died or stalled and was replaced.",
            ["reason"],
            registry=registry,
        )

    def restarted(self, reason: str) -> None:
        kind = "stalled" if reason.startswith("no progress") else "exited"
        self.restarts.labels(reason=kind).inc()
