"""Issue 24 (10): `helios_engine_restarts_total` counts every restart. The engine process is
killed, then its replacement is killed while it loads the model: two engine processes were
started to replace dead ones, and the counter says 2 (it said 1: a death during a restart went
uncounted, so six kills in a row showed as one)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from helios_serve.engine.child import ChildSpec
from helios_serve.engine.metrics import EngineMetrics
from helios_serve.engine.process import ProcessEngine

pytestmark = pytest.mark.slow  # three loads of the tiny model in engine processes (~25 s)


def _engine_pids() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


async def _new_engine_pid(known: set[int], timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while not (fresh := _engine_pids() - known):
        assert time.monotonic() < deadline, "no engine process was started again"
        await asyncio.sleep(0.01)
    return fresh.pop()


def test_a_death_while_restarting_is_counted_too(tmp_path: Path) -> None:
    before = _engine_pids()
    engine = ProcessEngine(ChildSpec("tiny", tmp_path, "helios", device="cpu"))
    registry = CollectorRegistry()
    engine.on_restart = EngineMetrics(registry).restarted
    engine.launch()

    async def main() -> None:
        await engine.start()
        try:
            first = await _new_engine_pid(before)
            os.kill(first, signal.SIGKILL)
            loading = await _new_engine_pid(before | {first})
            assert not engine.is_healthy()
            os.kill(loading, signal.SIGKILL)  # dies before its model is loaded
            deadline = time.monotonic() + 180
            while not engine.is_healthy():
                assert time.monotonic() < deadline, "the engine never came back"
                await asyncio.sleep(0.1)
        finally:
            await engine.close()

    asyncio.run(main())
    counted = registry.get_sample_value("helios_engine_restarts_total", {"reason": "exited"})
    assert counted == 2
    assert engine.restarts == 2
