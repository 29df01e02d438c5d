"""Prometheus metrics for jobs, on a registry the app owns (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0)


class JobMetrics:
    """Chunk latency and finished-job counters; gauges are read from the store at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.chunk_seconds = Histogram(
            "helios_chunk_seconds",
            "Wall time to generate one 33-frame chunk (job streams).",
            buckets=CHUNK_BUCKETS,
            registry=registry,
        )
        self.jobs_finished = Counter(
            "helios_jobs_finished",
            "Jobs that reached a final status since start.",
            ["status"],
            registry=registry,
        )

    def observe_chunk(self, seconds: float) -> None:
        self.chunk_seconds.observe(seconds)

    def job_finished(self, status: str) -> None:
        self.jobs_finished.labels(status=status).inc()
