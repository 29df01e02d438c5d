"""Steering mechanics on a real `Session` and `FrameBuffer`: a change reaches the next chunk
shown, chunks it rolled back never reach the track, a remade chunk equals a fresh stream's
(tiny model), and the invariants hold with a consumer pulling frames in real time.

Frames come from the paced test engine, whose frames carry their chunk index and prompt tag
(`core/framecode.py`), so what reached the "screen" (the frames popped from the buffer, as the
track pops them) is read from pixels, not inferred.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from helios_serve.core import framecode
from helios_serve.core.framecode import FrameCode, prompt_tag
from helios_serve.core.protocols import Engine
from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.spec import StreamRequest
from helios_serve.engine.child import ChildSpec
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.paced import PacedEngine, PacedTiming
from helios_serve.engine.process import ProcessEngine
from helios_serve.engine.service import LocalEngine, describe
from helios_serve.engine.streamer import SESSION_DECODE_GROUPS, ChunkStreamer
from helios_serve.realtime.driver import StreamOptions
from helios_serve.realtime.playout import FrameBuffer
from helios_serve.realtime.reactor.images import ImageLoader
from helios_serve.realtime.reactor.session import Session
from helios_serve.realtime.steering import LatencyMode

from .conftest import EventLog, np_upscale

A, B = "a lighthouse at dusk", "a storm over the lighthouse"
Frames = npt.NDArray[np.uint8]


class Rig:
    """A session whose buffer nobody pulls from unless the test pops frames itself."""

    def __init__(
        self, engine: Engine, options: StreamOptions, fps: float = 24, max_chunks: int = 2
    ) -> None:
        self.engine = engine
        self.log = EventLog()
        self.buffer = FrameBuffer(fps, max_chunks)
        self.session = Session(
            engine,
            options,
            self.log,
            self.buffer,
            ImageLoader(lambda ref: b""),
            np_upscale,
            commands_per_second=1000,
        )
        self.shown: list[Frames] = []

    def send(self, name: str, data: dict[str, Any] | None = None) -> None:
        body = {"scope": "application", "data": {"type": name, "data": data or {}}}
        self.session.receive(json.dumps(body))

    def pop(self, frames: int) -> list[Frames]:
        out = []
        for _ in range(frames):
            frame = self.buffer.pop()
            assert frame is not None, "the buffer ran dry"
            out.append(frame)
        self.shown += out
        return out

    async def chunk(
        self, index: int, prompt: str | None = None, within: float = 10
    ) -> dict[str, Any]:
        return await self.log.wait(
            "chunk_complete",
            lambda d: d["chunk_index"] == index and prompt in (None, d["active_prompt"]),
            within,
        )

    def stats(self) -> dict[str, Any]:
        return dict(self.log.of("state")[-1]["generation"])


def run(rig: Rig, body: Callable[[Rig], Any]) -> None:
    async def main() -> None:
        rig.session.start()
        try:
            await body(rig)
        finally:
            await rig.session.close()

    asyncio.run(main())


def paced_rig(**kw: Any) -> Rig:
    engine = PacedEngine(PacedTiming(0.03, steps=3, open_s=0.0))
    options = StreamOptions(192, 128, SamplingSettings(), **kw)
    return Rig(engine, options)


def codes(frames: list[Frames]) -> list[FrameCode | None]:
    return [framecode.read(f) for f in frames]


def test_a_prompt_at_steady_state_changes_the_next_chunk_shown_and_dropped_ones_never_show() -> (
    None
):
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": A})
        rig.send("start")
        await rig.chunk(1)  # nobody pulls frames: chunks 0 and 1 wait
        rig.pop(34)  # chunk 0 played, chunk 1 on screen: 2 and 3 are made to wait behind it
        await rig.chunk(3)
        assert rig.buffer.committed == 2
        rig.send("set_prompt", {"prompt": B})
        await rig.chunk(2, B)
        await rig.chunk(3, B)
        seen = codes(rig.pop(32 + 33 + 33))
        a, b = prompt_tag(A), prompt_tag(B)
        # chunk 1 was on screen: it plays out as made; the very next chunk shown has B
        assert seen[:32] == [FrameCode(1, i, a) for i in range(1, 33)]
        assert seen[32:] == [FrameCode(c, i, b) for c in (2, 3) for i in range(33)]
        assert all(code is not None and code.tag == a for code in codes(rig.shown[:34]))
        made = [(d["chunk_index"], d["active_prompt"]) for d in rig.log.of("chunk_complete")]
        assert made[:4] == [(0, A), (1, A), (2, A), (3, A)]  # 2 and 3 were made with A ...
        assert (2, B) in made
        assert (3, B) in made
        shown = [(d["chunk_index"], d["active_prompt"]) for d in rig.log.of("chunk_shown")]
        assert shown == [(0, A), (1, A), (2, B), (3, B)]
        stats = rig.stats()
        assert (stats["rollbacks"], stats["chunks_dropped"]) == (1, 2)
        assert rig.session.state.current_prompt == B

    run(paced_rig(), body)


def test_a_scheduled_prompt_on_a_made_chunk_remakes_it_and_one_on_screen_is_refused() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": A})
        rig.send("start")
        await rig.chunk(1)
        rig.pop(34)
        await rig.chunk(3)
        rig.send("schedule_prompt", {"prompt": B, "chunk": 3})  # made, not shown
        rig.send("schedule_prompt", {"prompt": B, "chunk": 1})  # on screen
        err = await rig.log.wait("command_error")
        assert err["reason"].startswith("chunk_already_generated")
        await rig.chunk(3, B)
        seen = codes(rig.pop(32 + 33 + 33))
        assert [c.tag if c else None for c in seen[32::33]] == [prompt_tag(A), prompt_tag(B)]
        assert rig.stats()["chunks_dropped"] == 1  # only chunk 3: chunk 2 kept its prompt

    run(paced_rig(), body)


def test_pause_keeps_made_chunks_and_reset_drops_everything() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": A})
        rig.send("start")
        await rig.chunk(1)
        rig.send("pause")
        await rig.log.wait("generation_paused")
        rig.send("set_prompt", {"prompt": B})  # paused: lands on the chunk resume makes
        await rig.log.wait("prompt_accepted", lambda d: d["prompt"] == B)
        seen = codes(rig.pop(66))
        assert {c.tag for c in seen if c} == {prompt_tag(A)}
        assert rig.stats()["rollbacks"] == 0
        rig.send("resume")
        done = await rig.chunk(2)
        assert done["active_prompt"] == B
        rig.send("reset")
        await rig.log.wait("generation_reset")
        assert rig.buffer.pop() is None  # nothing made before the reset plays
        assert rig.buffer.committed == 0

    run(paced_rig(), body)


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_remade_chunk_equals_a_fresh_stream_with_the_same_state_and_conditions(
    tiny_model: Callable[[str], LoadedModel], data_dir: Path, isolation: str
) -> None:
    model = tiny_model("tiny")
    settings = PRESETS[model.variant].with_overrides(
        pyramid_steps=(1, 1, 1), max_sequence_length=16
    )
    engine: LocalEngine | ProcessEngine
    if isolation == "thread":
        engine = LocalEngine(model, describe(model, "helios"))
    else:  # the supervised engine process: states cross the pipe, streams reopen there
        engine = ProcessEngine(ChildSpec("tiny", data_dir, "helios", device="cpu"))
        engine.launch()
    rig = Rig(engine, StreamOptions(64, 64, settings))

    async def body(rig: Rig) -> None:
        if isinstance(engine, ProcessEngine):
            await engine.start()
        rig.send("set_seed", {"seed": 11})
        rig.send("set_prompt", {"prompt": A})
        rig.send("start")
        await rig.chunk(1, within=120)
        rig.pop(34)  # chunk 0 played, chunk 1 on screen
        await rig.chunk(3, within=120)  # 2 and 3 made, waiting
        rig.send("set_prompt", {"prompt": B})
        await rig.chunk(2, B, within=120)
        rig.pop(32 + 33)
        stats = rig.stats()
        assert stats["rollbacks"] == 1
        assert stats["chunks_dropped"] + stats["chunks_abandoned"] >= 1

    try:
        run(rig, body)
    finally:
        asyncio.run(engine.close())
    request = StreamRequest(A, 64, 64, seed=11, settings=settings)
    # a session's stream decodes in its own groups (engine/chunk_decoding.py), so does this one
    fresh = ChunkStreamer(model, request, decode_groups=SESSION_DECODE_GROUPS)
    expected = [fresh.next_chunk().frames for _ in range(2)]
    fresh.set_prompt(B)
    expected.append(fresh.next_chunk().frames)
    got = np.stack(rig.shown)
    assert np.array_equal(got, np.concatenate(expected))  # bit for bit, the remade chunk 2 too


@pytest.mark.parametrize("mode", list(LatencyMode))
def test_steering_against_a_real_time_consumer_keeps_the_stream_whole(mode: LatencyMode) -> None:
    fps = 120.0  # a chunk plays for 0.275 s; the engine makes one in 0.1 s
    engine = PacedEngine(PacedTiming(0.1, steps=3, open_s=0.005))
    rig = Rig(engine, StreamOptions(192, 128, SamplingSettings(), latency=mode), fps=fps)
    prompts = [f"{A}, take {i}" for i in range(12)]
    sent_at: list[int] = []  # the chunk on screen when each prompt was sent

    async def consume(stop: asyncio.Event) -> None:
        while not stop.is_set():
            frame = rig.buffer.pop()
            if frame is not None:
                rig.shown.append(frame)
            await asyncio.sleep(1 / fps)

    async def body(rig: Rig) -> None:
        stop = asyncio.Event()
        consumer = asyncio.create_task(consume(stop))
        rng = random.Random(3)
        rig.send("set_prompt", {"prompt": prompts[0]})
        rig.send("start")
        await rig.log.wait("chunk_shown", lambda d: d["chunk_index"] == 3, within=30)
        for prompt in prompts[1:]:
            await asyncio.sleep(rng.uniform(0.0, 0.275))
            sent_at.append(rig.buffer.committed - 1)
            rig.send("set_prompt", {"prompt": prompt})
            await rig.log.wait("chunk_shown", lambda d, p=prompt: d["active_prompt"] == p, 30)
        rig.send("pause")
        await asyncio.sleep(1.0)  # what was made plays out
        stop.set()
        await consumer

    run(rig, body)
    seen = [c for c in codes(rig.shown) if c is not None]
    tags = {prompt_tag(p): i for i, p in enumerate(prompts)}
    # Frames are whole chunks in order: 0, 1, 2, ... each from frame 0 to 32, one prompt each.
    deduped = [c for i, c in enumerate(seen) if i == 0 or c != seen[i - 1]]  # repeats: holds
    chunks = [deduped[i : i + 33] for i in range(0, len(deduped), 33)]
    assert all(len(c) == 33 for c in chunks[:-1])
    chunks = [c for c in chunks if len(c) == 33]  # the last may be cut by the end of the test
    for index, frames in enumerate(chunks):
        assert [f.frame for f in frames] == list(range(33))
        assert {f.chunk for f in frames} == {index}
        assert len({f.tag for f in frames}) == 1
    # Each prompt shows from one chunk on, in order.
    order = [tags[frames[0].tag] for frames in chunks]
    assert order == sorted(order)
    assert set(order) == set(range(len(prompts)))
    # Chunks made and then rolled back never reached the screen.
    on_screen = {(f.chunk, f.tag) for f in seen}
    shown = {(d["chunk_index"], d["active_prompt"]) for d in rig.log.of("chunk_shown")}
    made = [(d["chunk_index"], d["active_prompt"]) for d in rig.log.of("chunk_complete")]
    rolled_back = [(i, prompt_tag(p)) for i, p in made if (i, p) not in shown]
    assert rolled_back or mode is LatencyMode.SMOOTH  # smooth mostly lands past what is made
    assert not on_screen & set(rolled_back)
    assert on_screen == {(i, prompt_tag(p)) for i, p in shown}
    # Where each change landed: the chunk after the one on screen (low), at most one later
    # (smooth, or a chunk that started between sending and applying).
    first = {tags[frames[0].tag]: index for index, frames in reversed(list(enumerate(chunks)))}
    for i, on_screen in enumerate(sent_at, start=1):
        assert on_screen + 1 <= first[i] <= on_screen + 2
    if mode is LatencyMode.LOW:
        assert rig.stats()["rollbacks"] >= 1


def test_a_ws_interaction_remakes_chunks_made_but_not_sent() -> None:
    from helios_serve.realtime.generation import Generation
    from helios_serve.realtime.ws.start import Interaction, Plan
    from helios_serve.realtime.ws.stream import InteractionSource, SocketPlayout

    clock = [100.0]
    engine = PacedEngine(PacedTiming(0.02, steps=3, open_s=0.0))
    request = StreamRequest(A, 128, 192, seed=5)
    plan = Plan(request, fps=33, chunks=6, config={})  # a chunk plays for 1 s
    source = InteractionSource(plan)
    playout = SocketPlayout(33, 0.25, lambda: not source.wanted(), clock=lambda: clock[0])
    options = StreamOptions(192, 128, request.settings, latency=LatencyMode.LOW)
    generation = Generation(engine, options, np_upscale, playout, source)

    async def main() -> None:
        generation.start()
        first = await playout.next_due()  # chunk 0 goes out at once
        assert first is not None
        clock[0] += 5.0  # the client is far into its playback: chunks 1 and 2 are due
        for _ in range(1000):  # until chunks 1 and 2 are made and wait to be sent
            if source.claimed == 3 and not generation.busy:
                break
            await asyncio.sleep(0.01)
        assert (playout.committed, source.claimed) == (1, 3)
        source.add(Interaction("ev-1", B, 1))
        landing = generation.landing(source.committed, source.claimed)
        assert landing == 1  # the first chunk not sent
        generation.rollback(landing)
        sent = [first]
        while (chunk := await playout.next_due()) is not None:
            sent.append(chunk)
            clock[0] += 1.0
        await generation.stop()
        assert [(c.index, c.prompt) for c in sent] == [(0, A)] + [(i, B) for i in range(1, 6)]
        assert [framecode.read(c.frames[0]) for c in sent[1:2]] == [FrameCode(1, 0, prompt_tag(B))]
        assert source.events[1]["started_event_ids"] == ["ev-1"]
        assert generation.stats.chunks_dropped == 2

    asyncio.run(main())
