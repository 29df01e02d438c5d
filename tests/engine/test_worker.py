"""The engine worker: one thread, sessions before jobs, errors go to the caller."""

from __future__ import annotations

import threading
import time

import pytest

from helios_serve.core.protocols import Priority
from helios_serve.engine.worker import EngineWorker


def test_higher_priority_work_runs_first() -> None:
    worker = EngineWorker()
    gate = threading.Event()
    order: list[str] = []
    first = worker.submit(gate.wait, Priority.JOB)  # occupies the worker
    time.sleep(0.05)
    jobs = [worker.submit(lambda i=i: order.append(f"job{i}"), Priority.JOB) for i in range(3)]
    session = worker.submit(lambda: order.append("session"), Priority.SESSION)
    gate.set()
    for f in [first, *jobs, session]:
        f.result(timeout=5)
    assert order == ["session", "job0", "job1", "job2"]
    worker.stop()


def test_an_exception_fails_only_its_item() -> None:
    errors: list[BaseException] = []
    worker = EngineWorker(on_error=errors.append)

    def boom() -> None:
        raise MemoryError("out of memory")

    with pytest.raises(MemoryError):
        worker.submit(boom, Priority.JOB).result(timeout=5)
    assert worker.submit(lambda: 42, Priority.JOB).result(timeout=5) == 42
    assert len(errors) == 1
    worker.stop()
    assert not worker.is_alive()
    with pytest.raises(RuntimeError, match="stopped"):
        worker.submit(lambda: 1, Priority.JOB).result(timeout=1)
