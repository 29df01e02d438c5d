"""How a gateway knows its cluster can work: the workers alive (for `/ready` and
`helios_workers_alive`) and the served model (learned from the registry, never loaded)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from helios_serve.cluster.maintenance import Upkeep
from helios_serve.cluster.registry import WorkerRegistry
from helios_serve.core.spec import ModelInfo
from helios_serve.errors import HeliosError

logger = logging.getLogger(__name__)


class WorkerWatch:
    """Counts the workers heard from within the worker timeout, about once a second."""

    def __init__(self, registry: WorkerRegistry, upkeep: Upkeep) -> None:
        self._registry = registry
        self._upkeep = upkeep
        self.alive = 0

    def healthy(self) -> bool:
        """Something can run jobs: at least one worker is alive."""
        return self.alive > 0

    async def watch(self) -> None:
        while True:
            try:
                timeout = self._upkeep.worker_timeout_s
                self.alive = await asyncio.to_thread(self._registry.alive, timeout)
            except HeliosError:
                self.alive = 0  # the database is away: nothing can run
            await asyncio.sleep(min(1.0, self._upkeep.interval_s))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.watch(), name="helios-worker-watch")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class WorkersCollector(Collector):
    """`helios_workers_alive`, as the watch last counted it."""

    def __init__(self, watch: WorkerWatch) -> None:
        self._watch = watch

    def collect(self) -> Iterator[GaugeMetricFamily]:
        alive = GaugeMetricFamily("helios_workers_alive", "Workers heard from within the lease.")
        alive.add_metric([], self._watch.alive)
        yield alive


async def wait_for_model(registry: WorkerRegistry, poll_s: float = 1.0) -> ModelInfo:
    """The served model's description, once a worker ever registered it."""
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
