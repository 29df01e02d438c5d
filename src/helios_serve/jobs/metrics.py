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
        self.checkpoint_bytes = Histogram(
            "helios_checkpoint_bytes",
            "Size of the stream state saved after each chunk of a job.",
            buckets=(1e4, 1e5, 1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8),
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "helios_checkpoint_seconds",
            "Time to save one chunk: its MP4 segment(s), thumbnail and stream state.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.jobs_resumed = Counter(
            "helios_jobs_resumed",
            "Job attempts that continued from a saved chunk instead of starting over.",
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

    def observe_checkpoint(self, size: int, seconds: float) -> None:
        self.checkpoint_bytes.observe(size)
        self.checkpoint_seconds.observe(seconds)

    def job_resumed(self) -> None:
        self.jobs_resumed.inc()

    def job_finished(self, status: str) -> None:
        self.jobs_finished.labels(status=status).inc()
