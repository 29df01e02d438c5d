"""The supervised engine's reader thread survives a failing progress callback (a full disk, a
locked SQLite under the progress write), and `/ready`'s health follows the engine's progress:
a busy engine silent for several of its own step times is not ready, and is again once it
steps (issue 24, findings 9 and 10)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from helios_serve.core.protocols import Priority
from helios_serve.core.settings import PRESETS
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import StepProgress, Variant
from helios_serve.engine.process import ChildSpec, ProcessEngine
from helios_serve.engine.pulse import EnginePulse

SETTINGS = PRESETS[Variant.DISTILLED].with_overrides(
    pyramid_steps=(2, 2, 2), max_sequence_length=16
)


@dataclass(frozen=True)
class BlockWhileFileExists:
    """A step hook (pickled into the engine process): from chunk `from_chunk` on, the engine
    blocks before each step while `path` exists, as a frozen GPU would."""

    path: Path
    from_chunk: int = 1

    def __call__(self, progress: StepProgress) -> None:
        while progress.chunk_index >= self.from_chunk and self.path.exists():
            time.sleep(0.05)


def _until_unhealthy(engine: ProcessEngine, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while engine.is_healthy() and time.monotonic() < deadline:
        time.sleep(0.1)
    return engine.is_healthy()


def test_the_pulse_judges_silence_by_the_measured_pace() -> None:
    pulse = EnginePulse(factor=5.0, floor_s=1.0)
    pulse.start(0.0)
    assert not pulse.stalled(100.0, busy=True)  # nothing measured yet: the stall timeout judges
    for t in (0.5, 1.0, 1.5):
        pulse.beat(t, busy=True)
    assert pulse.limit_s() == 2.5
    assert not pulse.stalled(3.9, busy=True)
    assert pulse.stalled(4.1, busy=True)
    assert not pulse.stalled(4.1, busy=False)  # an idle engine is silent by right
    pulse.beat(4.2, busy=True)
    assert not pulse.stalled(4.3, busy=True)


def test_a_failing_progress_write_does_not_stop_the_reader_and_ready_follows_steps(
    data_dir: Path, tmp_path: Path
) -> None:
    block = tmp_path / "frozen"
    engine = ProcessEngine(
        ChildSpec("tiny", data_dir, "helios", device="cpu", step_hook=BlockWhileFileExists(block)),
        pulse=EnginePulse(factor=3.0, floor_s=0.5),
    )
    engine.launch()

    def locked(_progress: StepProgress) -> None:
        raise sqlite3.OperationalError("database is locked")

    async def body() -> list[bool]:
        await engine.start()
        stream = await engine.open_stream(
            StreamRequest("a fox", 64, 64, seed=1, settings=SETTINGS), Priority.JOB
        )
        # every progress write fails: the chunk still arrives, and the next one at once
        first = await asyncio.wait_for(stream.next_chunk(locked), 120)
        assert first.index == 0
        assert engine.is_healthy()
        block.write_text("1")
        stepping = threading.Event()
        frozen = asyncio.create_task(stream.next_chunk(lambda _p: stepping.set()))
        seen = [await asyncio.to_thread(_until_unhealthy, engine, 30)]  # frozen: not ready
        block.unlink()
        second = await asyncio.wait_for(frozen, 120)
        assert second.index == 1
        assert stepping.is_set()
        seen.append(engine.is_healthy())  # stepping again: ready
        return seen

    try:
        assert asyncio.run(body()) == [False, True]
    finally:
        asyncio.run(engine.close())
