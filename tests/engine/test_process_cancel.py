"""The supervised engine process stops a chunk whose caller gave up on it (a closing session, a
dropped chunk) at its next step, instead of finishing it for nobody while the calls queued
behind it (the session's close, the next job) wait."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from helios_serve.core.protocols import Priority
from helios_serve.core.settings import PRESETS
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import Variant
from helios_serve.engine.process import ChildSpec, ProcessEngine


def test_a_chunk_nobody_waits_for_is_cancelled_in_the_engine(data_dir: Path) -> None:
    engine = ProcessEngine(ChildSpec("tiny", data_dir, "helios", device="cpu"))
    engine.launch()
    settings = PRESETS[Variant.DISTILLED].with_overrides(
        pyramid_steps=(4, 4, 4),
        max_sequence_length=16,  # 12 steps: it is cancelled at 1
    )

    async def body() -> int:
        await engine.start()
        stream = await engine.open_stream(
            StreamRequest("a fox", 64, 64, seed=1, settings=settings), Priority.SESSION
        )
        stepping = threading.Event()  # progress arrives on the engine's reader thread
        abandoned = asyncio.create_task(stream.next_chunk(lambda _p: stepping.set()))
        assert await asyncio.to_thread(stepping.wait, 300)
        abandoned.cancel()
        await asyncio.gather(abandoned, return_exceptions=True)
        # queued behind the abandoned call: had that chunk been finished, this is chunk 1
        return (await stream.next_chunk()).index

    try:
        assert asyncio.run(body()) == 0
    finally:
        asyncio.run(engine.close())
