"""Live delivery on a real `Session`, `FrameBuffer` and `PacedVideoTrack`: frames reach the track
as they are decoded, a rollback drops decoded frames it never showed, and playback follows an
engine that slows down and speeds up (or holds its pinned rate).

The paced test engine paints every frame with its chunk, frame and prompt tag, and hands its
frames over latent frame by latent frame (1, then 4 at a time) over its decode share, so what
reached the "screen" is read from pixels. These test mechanics, not timings: the margins are
wide enough for a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from helios_serve.core import framecode
from helios_serve.core.framecode import FrameCode, prompt_tag
from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.paced import PacedEngine, PacedTiming
from helios_serve.realtime.driver import StreamOptions
from helios_serve.realtime.playback import PlaybackRate
from helios_serve.realtime.playout import FrameBuffer
from helios_serve.realtime.reactor.images import ImageLoader
from helios_serve.realtime.reactor.session import Session
from helios_serve.realtime.reactor.track import PacedVideoTrack
from helios_serve.realtime.steering import LatencyMode

from .conftest import EventLog, np_upscale

A, B = "a lighthouse at dusk", "a storm over the lighthouse"
Frames = npt.NDArray[np.uint8]


class Rig:
    def __init__(
        self,
        timing: PacedTiming,
        fps: float = 24.0,
        latency: LatencyMode = LatencyMode.SMOOTH,
        pinned: bool = False,
    ) -> None:
        self.engine = PacedEngine(timing)
        self.log = EventLog()
        self.buffer = FrameBuffer(fps, 2, rate=PlaybackRate(fps, pinned=pinned))
        options = StreamOptions(192, 128, SamplingSettings(), latency=latency)
        self.session = Session(
            self.engine, options, self.log, self.buffer, ImageLoader(lambda ref: b""), np_upscale
        )
        self.track = PacedVideoTrack(self.buffer, fps, 192, 128)

    def send(self, name: str, data: dict[str, Any] | None = None) -> None:
        body = {"scope": "application", "data": {"type": name, "data": data or {}}}
        self.session.receive(json.dumps(body))

    def complete(self, index: int, prompt: str | None = None) -> bool:
        return any(
            d["chunk_index"] == index and prompt in (None, d["active_prompt"])
            for d in self.log.of("chunk_complete")
        )

    async def recv(self) -> FrameCode | None:
        """The next frame the track sends, as its code says."""
        frame = await self.track.recv()
        return framecode.read(frame.to_ndarray(format="gray"))


def run(rig: Rig, body: Any) -> None:
    async def main() -> None:
        rig.session.start()
        try:
            await body(rig)
        finally:
            rig.track.stop()
            await rig.session.close()

    asyncio.run(main())


def codes(frames: list[Frames]) -> list[FrameCode | None]:
    return [framecode.read(f) for f in frames]


def test_frames_of_a_chunk_reach_the_track_before_its_decode_ends() -> None:
    # 0.06 s of steps, then 0.54 s of decode handing over 1, 4, 4, ... frames
    rig = Rig(PacedTiming(0.6, steps=2, open_s=0.0, decode_share=0.9), fps=48)
    early: set[int] = set()  # chunks a frame of which the track sent before chunk_complete

    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": A})
        rig.send("start")
        for _ in range(8 * 33):  # eight chunks' worth of ticks at most
            if len(early) >= 3:
                break
            code = await asyncio.wait_for(rig.recv(), 5)
            if code is not None and not rig.complete(code.chunk):
                early.add(code.chunk)

    run(rig, body)
    # chunk 0 plays as soon as it comes; later ones are made just in time, and still start
    # while their decode goes on
    assert 0 in early
    assert early - {0}


def test_a_rollback_never_shows_a_dropped_frame_even_one_already_decoded() -> None:
    # nobody plays in real time: the test pops frames itself, as the track would
    rig = Rig(PacedTiming(0.6, steps=2, open_s=0.0, decode_share=0.8), latency=LatencyMode.LOW)
    shown: list[Frames] = []

    def pop(count: int) -> None:
        for _ in range(count):
            frame = rig.buffer.pop()
            assert frame is not None, "the buffer ran dry"
            shown.append(frame)

    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": A})
        rig.send("start")
        await rig.log.wait("chunk_complete", lambda d: d["chunk_index"] == 1, 20)
        pop(34)  # chunk 0 played, chunk 1 on screen: 2 is made, then 3 starts decoding
        for _ in range(2000):
            last = rig.buffer.queued[-1]
            if last.index == 3 and last.ready and not last.complete:
                break
            await asyncio.sleep(0.005)
        partial = rig.buffer.queued[-1]
        assert (partial.index, partial.complete) == (3, False)
        decoded = partial.ready  # frames of chunk 3 (prompt A) decoded, not shown
        rig.send("set_prompt", {"prompt": B})  # lands on chunk 2: 2 and the partial 3 go
        remade = await rig.log.wait("chunk_complete", lambda d: d["chunk_index"] == 3, 20)
        assert remade["active_prompt"] == B  # chunk 3 with A never completed
        pop(32 + 33 + 33)
        stats = rig.log.of("state")[-1]["generation"]
        assert decoded >= 1
        assert stats["chunks_abandoned"] == 1  # chunk 3, let go of between decoded groups
        assert stats["chunks_dropped"] == 1  # chunk 2, made whole

    run(rig, body)
    seen = codes(shown)
    a, b = prompt_tag(A), prompt_tag(B)
    assert seen[:34] == [FrameCode(0, i, a) for i in range(33)] + [FrameCode(1, 0, a)]
    assert seen[34:66] == [FrameCode(1, i, a) for i in range(1, 33)]
    assert seen[66:] == [FrameCode(c, i, b) for c in (2, 3) for i in range(33)]


def test_the_playback_rate_falls_and_recovers_with_an_engine_that_slows_and_speeds_up() -> None:
    fps = 48.0  # a chunk plays for 0.69 s
    fast = PacedTiming(0.25, steps=2, open_s=0.0, decode_share=0.4)
    slow = PacedTiming(1.1, steps=2, open_s=0.0, decode_share=0.4)  # sustains 30 fps
    rig = Rig(fast, fps=fps)
    rates: dict[str, list[float]] = {"fast": [], "slow": [], "again": []}

    async def play(phase: str, chunks: int) -> None:
        start = rig.buffer.committed
        while rig.buffer.committed < start + chunks:
            await asyncio.wait_for(rig.recv(), 5)
            rates[phase].append(rig.buffer.rate.fps)

    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": A})
        rig.send("start")
        await play("fast", 3)
        rig.engine.timing = slow
        await play("slow", 5)
        rig.engine.timing = fast
        await play("again", 5)

    run(rig, body)
    assert max(rates["fast"]) == fps  # at the nominal rate while the engine keeps up
    assert min(rates["slow"]) < 0.8 * fps  # slower while it cannot
    assert min(rates["slow"]) >= 16.0  # never under the floor
    assert max(rates["again"][-33:]) == fps  # and back up once it can again
    states = [s["playback"] for s in rig.log.of("state") if "playback" in s]
    assert states
    assert min(s["fps"] for s in states) < fps


def test_a_pinned_rate_holds_whatever_the_engine_does() -> None:
    fps = 48.0
    rig = Rig(PacedTiming(1.0, steps=2, open_s=0.0, decode_share=0.4), fps=fps, pinned=True)

    async def body(rig: Rig) -> None:
        rig.send("set_prompt", {"prompt": A})
        rig.send("start")
        while rig.buffer.committed < 3:
            await asyncio.wait_for(rig.recv(), 5)
            assert rig.buffer.rate.fps == fps

    run(rig, body)
    assert rig.track.repeats > 0  # it held its last frame between chunks instead
    assert rig.log.of("state")[-1]["playback"]["pinned"] is True


def socket_run(pinned: float | None) -> list[list[float]]:
    """The frame durations of the chunks a `/v1/realtime/video` socket sends, with an engine
    that sustains 30 fps of a 48 fps stream."""
    from helios_serve.core.spec import StreamRequest
    from helios_serve.realtime.generation import Generation
    from helios_serve.realtime.ws.start import Plan
    from helios_serve.realtime.ws.stream import InteractionSource, SocketPlayout

    engine = PacedEngine(PacedTiming(1.1, steps=2, open_s=0.0, decode_share=0.4))
    plan = Plan(StreamRequest(A, 128, 192, seed=5), fps=48, chunks=5, config={})
    source = InteractionSource(plan)
    rate = PlaybackRate(pinned or 48.0, pinned=pinned is not None)
    playout = SocketPlayout(48, 0.1, lambda: not (source.wanted() or generation.busy), rate=rate)
    options = StreamOptions(192, 128, plan.request.settings)
    generation = Generation(engine, options, np_upscale, playout, source)
    sent: list[list[float]] = []

    async def main() -> None:
        generation.start()
        while (chunk := await asyncio.wait_for(playout.next_due(), 10)) is not None:
            assert chunk.durations is not None
            sent.append(chunk.durations)
        await generation.stop()

    asyncio.run(main())
    return sent


def test_a_socket_plays_slower_while_the_engine_is_behind_unless_pinned() -> None:
    following = socket_run(None)
    assert len(following) == 5
    rates = [33 / sum(d) for d in following[1:-1]]  # nothing follows the last: back up
    assert all(16.0 <= r < 0.85 * 48 for r in rates), rates
    assert socket_run(48.0) == [[1 / 48] * 33] * 5


def test_fragments_carry_the_frame_durations_they_are_given() -> None:
    import io

    import av

    from helios_serve.media.fmp4 import FragmentedMp4Encoder

    encoder = FragmentedMp4Encoder(64, 32, fps=24)
    data = encoder.encode(np.full((33, 32, 64, 3), 40, np.uint8))
    slower = [1 / 24 + i / 33 * (1 / 16 - 1 / 24) for i in range(33)]  # easing down to 16 fps
    data += encoder.encode(np.full((33, 32, 64, 3), 90, np.uint8), slower)
    with av.open(io.BytesIO(data)) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    expected = [i / 24 for i in range(33)] + [33 / 24 + sum(slower[:i]) for i in range(33)]
    assert times == pytest.approx(expected, abs=1e-4)


def test_a_session_may_pin_its_playback_rate_and_a_bad_one_is_refused() -> None:
    from helios_serve.engine.fake import FakeEngineConfig
    from helios_serve.realtime.reactor.request import stream_overrides
    from helios_serve.realtime.ws.start import WsError, plan_session
    from helios_serve.web.errors import ApiError

    info = FakeEngineConfig().info
    assert stream_overrides({"playback_fps": 20}, info) == {"playback_fps": 20.0}
    start = {"type": "session.start", "prompt": "a fox", "width": 64, "height": 64}
    assert plan_session(start, info).playback_fps is None  # follows the engine
    pinned = plan_session(start | {"extra_params": {"playback_fps": 12.5}}, info)
    assert pinned.playback_fps == 12.5
    for bad in (0, 0.5, 241, "24", True, None):
        with pytest.raises(ApiError) as refused:
            stream_overrides({"playback_fps": bad}, info)
        assert refused.value.status == 400
        if bad is None:
            continue  # null in extra_params is the key left out, as for every other key
        with pytest.raises(WsError) as ws_refused:
            plan_session(start | {"extra_params": {"playback_fps": bad}}, info)
        assert ws_refused.value.code == "invalid_parameter"
