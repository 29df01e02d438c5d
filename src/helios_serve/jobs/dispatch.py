"""`JobDispatch`: how an admitted job reaches a worker.

Two implementations, chosen by the mode: `jobs.runner.JobRunner` (in-process: the one runner
of `helios serve` claims from the store itself; `submitted` only wakes it) and
`cluster.queue.QueueDispatch` (a gateway defers the job on procrastinate's PostgreSQL queue,
and whichever `helios worker` is free takes it; cancellation reaches that worker through the
job's record, which its heartbeat reads).
"""

from __future__ import annotations

from typing import Protocol


class JobDispatch(Protocol):
    trouble: str | None
    """Why jobs cannot go on right now (the store keeps failing), or None; `/ready` says it."""

    def start(self) -> None:
        """Begin (with the app's event loop)."""
        ...

    async def stop(self) -> None: ...

    async def submitted(self, job_id: str) -> None:
        """`job_id` was admitted to the store (committed): get it to a worker. Must not raise
        for a passing outage: the job is already acknowledged and will be dispatched later."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Stop `job_id` at its next step if it runs here; False otherwise."""
        ...
