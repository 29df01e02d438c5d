"""EngineWorker: the one thread that touches the model; work runs by priority, then FIFO.

Work items are small (one chunk, one conditioning change), so a session's next chunk never
waits behind a whole job: jobs release the worker between chunks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from helios_serve.core.protocols import Priority

logger = logging.getLogger(__name__)
T = TypeVar("T")

_STOP = object()


class EngineWorker:
    """A single worker thread with a priority queue of callables."""

    def __init__(
        self, name: str = "helios-engine", on_error: Callable[[BaseException], None] | None = None
    ) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any, Future[Any] | None]] = (
            queue.PriorityQueue()
        )
        self._seq = itertools.count()
        self._on_error = on_error
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.busy_since: float | None = None

    def submit(self, fn: Callable[[], T], priority: Priority) -> Future[T]:
        future: Future[T] = Future()
        if not self._thread.is_alive():
            future.set_exception(RuntimeError("the engine worker has stopped"))
            return future
        self._queue.put((int(priority), next(self._seq), fn, future))
        return future

    async def run(self, fn: Callable[[], T], priority: Priority) -> T:
        """Run `fn` on the worker and await its result from the event loop."""
        return await asyncio.wrap_future(self.submit(fn, priority))

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the item in progress, then stop (queued items are cancelled)."""
        self._queue.put((-1, -1, _STOP, None))
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            _, _, fn, future = self._queue.get()
            if fn is _STOP:
                self._drain()
                return
            assert future is not None
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to the caller; the worker lives on
                future.set_exception(exc)
                if self._on_error is not None:
                    self._on_error(exc)

    def _drain(self) -> None:
        while not self._queue.empty():
            _, _, _, future = self._queue.get_nowait()
            if future is not None:
                future.cancel()
