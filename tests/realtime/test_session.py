"""Session with FakeEngine and a recording sink: ordering, prompts, pause, reset, SR, seeds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
from helios_serve.realtime.driver import StreamOptions
from helios_serve.realtime.playout import MadeChunk, Started
from helios_serve.realtime.reactor.images import ImageLoader
from helios_serve.realtime.reactor.session import Session

from .conftest import EventLog, np_upscale, png_bytes


class RecordingSink:
    """A playout nobody plays: every chunk counts as shown as soon as it is queued."""

    def __init__(self) -> None:
        self.chunks: list[npt.NDArray[np.uint8]] = []
        self.cleared = 0
        self.committed = 0
        self._started: Started | None = None

    def listen(self, started: Started, room: Callable[[], None], supply: Any) -> None:
        self._started = started

    def slack(self) -> tuple[float, float]:
        return 0.0, 0.0

    def playback(self) -> dict[str, Any]:
        return {}

    def grew(self, chunk: MadeChunk) -> None:
        return None  # the fake engine hands each chunk over whole

    def time_left(self) -> float | None:
        return None

    def to_boundary(self) -> float | None:
        return None

    playback_s = 33 / 24

    def has_room(self) -> bool:
        return True

    def push(self, chunk: MadeChunk) -> None:
        self.chunks.append(chunk.frames)
        self.committed = chunk.index + 1
        if self._started is not None:
            asyncio.get_running_loop().call_soon(self._started, chunk, None)

    def drop_from(self, index: int) -> list[int]:
        return []

    def clear(self) -> None:
        self.cleared += 1
        self.committed = 0


class Rig:
    def __init__(
        self, uploads: dict[str, bytes] | None = None, step_delay_s: float = 0.005
    ) -> None:
        self.engine = FakeEngine(FakeEngineConfig(step_delay_s=step_delay_s))
        self.log = EventLog()
        self.sink = RecordingSink()
        store = uploads or {}
        self.session = Session(
            self.engine,
            StreamOptions(width=32, height=16, settings=SamplingSettings()),
            self.log,
            self.sink,
            ImageLoader(lambda ref: store[ref]),
            np_upscale,
            commands_per_second=1000,
        )

    def send(self, name: str, data: dict[str, Any] | None = None, **extra: Any) -> None:
        self.session.receive(
            json.dumps(
                {"scope": "application", "data": {"type": name, "data": data or {}, **extra}}
            )
        )

    async def chunk(self, index: int) -> dict[str, Any]:
        return await self.log.wait("chunk_complete", lambda d: d["chunk_index"] == index)


def run(body: Callable[[Rig], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        rig = Rig(**kw)
        rig.session.start()
        try:
            await body(rig)
        finally:
            await rig.session.close()

    asyncio.run(main())


def test_prompt_then_start_streams_chunks_in_order() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": "a cat"})
        rig.send("start")
        done = await rig.chunk(2)
        assert done == {"chunk_index": 2, "frames_emitted": 33, "active_prompt": "a cat"}
        started = rig.log.of("generation_started")
        assert started == [{"prompt": "a cat", "chunk_index": 0}]
        assert rig.log.of("prompt_accepted")[0] == {"prompt": "a cat"}
        assert rig.log.of("conditions_ready")[0] == {"has_prompt": True, "has_image": False}
        assert all(c.shape == (33, 16, 32, 3) for c in rig.sink.chunks)
        states = rig.log.of("state")
        assert states[-1]["current_chunk"] >= 3
        assert states[-1]["current_prompt"] == "a cat"

    run(body)


def test_start_without_prompt_is_rejected() -> None:
    async def body(rig: Rig) -> None:
        rig.send("start")
        err = await rig.log.wait("command_error")
        assert err["command"] == "start"
        assert rig.session.state.started is False

    run(body)


def test_scheduled_prompt_is_active_at_its_chunk() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": "first"})
        rig.send("schedule_prompt", {"prompt": "second", "chunk": 2})
        rig.send("start")
        await rig.chunk(3)
        active = {d["chunk_index"]: d["active_prompt"] for d in rig.log.of("chunk_complete")}
        assert [active[i] for i in range(4)] == ["first", "first", "second", "second"]
        assert not np.array_equal(rig.sink.chunks[1], rig.sink.chunks[2])
        rig.send("schedule_prompt", {"prompt": "too late", "chunk": 0})
        err = await rig.log.wait("command_error")
        assert err["command"] == "schedule_prompt"
        assert err["reason"].startswith("chunk_already_generated")

    run(body)


def test_pause_stops_after_the_current_chunk_and_resume_continues() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": "p"})
        rig.send("start")
        await rig.chunk(1)
        rig.send("pause")
        await rig.log.wait("generation_paused")
        await asyncio.sleep(0.05)  # let an in-flight chunk finish
        count = len(rig.log.of("chunk_complete"))
        await asyncio.sleep(0.2)
        assert len(rig.log.of("chunk_complete")) == count
        assert rig.log.of("state")[-1]["paused"] is True
        rig.send("set_prompt", {"prompt": "after"})
        rig.send("resume")
        done = await rig.chunk(count)
        assert done["active_prompt"] == "after"
        assert rig.log.of("generation_resumed") == [{}]

    run(body)


def test_reset_clears_image_prompts_and_counters() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_image", {}, uploads={"image": {"upload_id": "img"}})
        accepted = await rig.log.wait("image_accepted")
        assert accepted == {"width": 20, "height": 10}
        rig.send("set_prompt", {"prompt": "p"})
        rig.send("schedule_prompt", {"prompt": "q", "chunk": 50})
        rig.send("start")
        await rig.chunk(1)
        assert rig.engine.opened[0].image.shape == (10, 20, 3)
        rig.send("reset")
        await rig.log.wait("generation_reset")
        await asyncio.sleep(0)
        snap = rig.log.of("state")[-1]  # the state right after generation_reset
        assert (snap["started"], snap["current_frame"]) == (False, 0)
        assert snap["image_set"] is False
        assert snap["scheduled_prompts"] == []
        assert snap["current_chunk"] == 0
        assert rig.sink.cleared == 1
        count = len(rig.log.of("chunk_complete"))
        await asyncio.sleep(0.1)
        assert len(rig.log.of("chunk_complete")) == count  # nothing stale after the reset

    run(body, uploads={"img": png_bytes(20, 10)})


def test_text_upload_as_image_is_a_command_error() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_image", {}, uploads={"image": {"upload_id": "txt"}})
        err = await rig.log.wait("command_error")
        assert err["command"] == "set_image"
        assert err["reason"].startswith("invalid_image")
        rig.send("set_conditioning", {"prompt": "p"}, uploads={"image": {"upload_id": "txt"}})
        err = await rig.log.wait("command_error", lambda d: d["command"] == "set_conditioning")
        assert rig.session.state.snapshot()["scheduled_prompts"] == []  # all or nothing
        rig.send("set_image", {}, uploads={"image": {"upload_id": "missing"}})
        err = await rig.log.wait("command_error", lambda d: "unknown_upload" in d["reason"])

    run(body, uploads={"txt": b"hello, this is text"})


def test_sr_scale_applies_from_the_next_chunk() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": "p"})
        rig.send("start")
        await rig.chunk(0)
        rig.send("set_sr_scale", {"sr_scale": "2x"})
        snap = await rig.log.wait("state", lambda d: d["sr_scale"] == "2x")
        await rig.chunk(snap["current_chunk"] + 2)
        assert rig.sink.chunks[0].shape[1:3] == (16, 32)
        assert rig.sink.chunks[-1].shape[1:3] == (32, 64)

    run(body)


async def _frames_for(seed: int) -> list[npt.NDArray[np.uint8]]:
    rig = Rig()
    rig.session.start()
    rig.send("set_seed", {"seed": seed})
    rig.send("set_prompt", {"prompt": "same"})
    rig.send("start")
    await rig.chunk(1)
    await rig.session.close()
    assert rig.engine.opened[0].seed == seed
    return rig.sink.chunks[:2]


def test_same_seed_same_frames() -> None:
    async def main() -> None:
        a, b, c = await _frames_for(7), await _frames_for(7), await _frames_for(8)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not np.array_equal(a[0], c[0])

    asyncio.run(main())


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '{"scope":"application","data":{"type":"warp"}}',
        '{"data":{"type":"set_prompt"}}',
    ],
)
def test_junk_messages_get_command_error_and_session_lives(raw: str) -> None:
    async def body(rig: Rig) -> None:
        rig.session.receive(raw)
        await rig.log.wait("command_error")
        rig.send("set_prompt", {"prompt": "still alive"})
        await rig.log.wait("prompt_accepted")

    run(body)


def test_runtime_capabilities_and_rate_limit() -> None:
    async def body(rig: Rig) -> None:
        rig.session.receive('{"scope":"runtime","data":{"type":"requestCapabilities","data":{}}}')
        caps = rig.log.events[-1]
        assert caps["scope"] == "runtime"
        assert caps["data"]["type"] == "modelCapabilities"
        names = [c["name"] for c in caps["data"]["data"]["commands"]]
        assert "schedule_prompt" in names

    run(body)

    async def flood() -> None:
        rig = Rig()
        rig.session = Session(
            rig.engine,
            StreamOptions(32, 16, SamplingSettings()),
            rig.log,
            rig.sink,
            ImageLoader(lambda r: b""),
            np_upscale,
            commands_per_second=30,
        )
        for _ in range(40):
            rig.session.receive('{"scope":"runtime","data":{"type":"ping","data":{}}}')
        assert [e["reason"] for e in rig.log.of("command_error")] == ["rate_limited"] * 10

    asyncio.run(flood())


def test_engine_failure_pauses_with_an_error() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": "boom [fail]"})
        rig.send("start")
        err = await rig.log.wait("command_error")
        assert err["reason"].startswith("generation_failed")
        assert rig.session.state.paused is True

    run(body)


def test_a_restarted_engine_ends_the_session_with_one_clear_event() -> None:
    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": "a cat [engine-restart]"})
        rig.send("start")
        err = await rig.log.wait("command_error")
        assert err["command"] == "start"
        assert err["reason"].startswith("engine_restarted")
        assert rig.session.ended_reason == "engine restarted"
        await asyncio.sleep(0.2)
        assert len(rig.log.of("command_error")) == 1  # it stopped, rather than retrying
        assert len(rig.log.of("chunk_complete")) == 1

    run(body)


def test_the_manager_closes_a_session_whose_engine_restarted() -> None:
    from helios_serve.realtime.config import RealtimeConfig
    from helios_serve.realtime.reactor.handle import SessionMode, Status
    from helios_serve.realtime.reactor.registry import SessionRegistry
    from helios_serve.realtime.slots import StreamHost

    async def main() -> None:
        config = RealtimeConfig(watchdog_interval_s=0.05)
        host = StreamHost.build(FakeEngine(), config, np_upscale)
        manager = SessionRegistry(host)
        handle = await manager.create(SessionMode.LOCAL, {})
        assert handle.session is not None
        for name, data in (("set_prompt", {"prompt": "x [engine-restart]"}), ("start", {})):
            message = {"scope": "application", "data": {"type": name, "data": data}}
            handle.session.receive(json.dumps(message))
        for _ in range(200):
            if handle.status is Status.CLOSED:
                break
            await asyncio.sleep(0.05)
        assert handle.status is Status.CLOSED
        assert handle.closed_reason == "engine restarted"
        assert host.slots.in_use == 0
        await manager.shutdown()

    asyncio.run(main())
