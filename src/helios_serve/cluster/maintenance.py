"""The cluster's upkeep, run by every gateway and worker (each step is safe to run anywhere,
at once): jobs of silent workers go back on the queue, and no stored job is left undispatched.

1. procrastinate's documented recovery: tasks of workers whose heartbeat stopped
   (`get_stalled_jobs`) are retried, so a free worker takes them.
2. Job records whose own heartbeat stopped (`recover_stale`) are queued again (or failed after
   `max_attempts`): the backstop when the queue's bookkeeping and the record disagree (a
   paused worker that wakes up ends its stale task as done).
3. Queued records without a queue task are deferred (a gateway stopped between the two).

Steps 1 and 2 wait one worker timeout after a round that could not reach the database: nobody
could report in meanwhile, so silence then proves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import procrastinate

from helios_serve.jobs.postgres.queue import VIDEOS_QUEUE, defer_video, undispatched_jobs
from helios_serve.jobs.postgres.store import PostgresJobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upkeep:
    worker_timeout_s: float = 30.0
    """A worker silent this long has lost its job."""
    max_attempts: int = 3
    interval_s: float = 2.0


class Maintenance:
    def __init__(self, app: procrastinate.App, store: PostgresJobStore, upkeep: Upkeep) -> None:
        self._app = app
        self._store = store
        self._upkeep = upkeep
        self._task: asyncio.Task[None] | None = None
        self._judge_after = 0.0
        """Monotonic time before which no worker is judged silent: nobody could report in
        while the database was away, so after an outage every worker gets a full timeout."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="helios-cluster-upkeep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The upkeep runs while the block does."""
        self.start()
        try:
            yield
        finally:
            await self.stop()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the database away: try again next round
                logger.warning("cluster upkeep skipped a round: %s", exc)
                self._judge_after = time.monotonic() + self._upkeep.worker_timeout_s
            await asyncio.sleep(self._upkeep.interval_s)

    async def run_once(self) -> None:
        upkeep = self._upkeep
        manager = self._app.job_manager
        if time.monotonic() < self._judge_after:  # just after an outage: silence proves nothing
            for job_id in await asyncio.to_thread(undispatched_jobs, self._store.pool):
                await defer_video(self._app, job_id)
            return
        stalled = await manager.get_stalled_jobs(
            queue=VIDEOS_QUEUE, seconds_since_heartbeat=upkeep.worker_timeout_s
        )
        for task in stalled:
            logger.warning("queue task %s of a silent worker: retried", task.id)
            with contextlib.suppress(Exception):  # another node retried it first
                await manager.retry_job(task)
        report = await asyncio.to_thread(
            self._store.recover_stale, upkeep.worker_timeout_s, upkeep.max_attempts
        )
        for job_id in report.requeued_ids:
            logger.warning("job %s: its worker went silent; queued again", job_id)
        for job_id in report.failed_ids:
            logger.warning("job %s: out of attempts after lost workers; failed", job_id)
        for job_id in await asyncio.to_thread(undispatched_jobs, self._store.pool):
            await defer_video(self._app, job_id)
