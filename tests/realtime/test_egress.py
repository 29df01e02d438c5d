"""The WebRTC egress: codec preference, encoder choice, deferred SR, and the degradation rule."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from helios_serve.core.settings import SamplingSettings
from helios_serve.realtime.driver import Conditions, StreamDriver, StreamOptions
from helios_serve.realtime.egress import EgressGovernor, EgressPolicy
from helios_serve.realtime.playout import FrameBuffer, MadeChunk
from helios_serve.realtime.reactor import encoders
from helios_serve.realtime.reactor.track import video_frame

FPS = 24.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(
    gov: EgressGovernor, clock: Clock, seconds: float, fps: float, scale: int, busy: float
) -> None:
    """Frames at `fps` for `seconds` (until the cap changes), each sent at `scale` after `busy`
    seconds of egress."""
    cap = gov.cap
    for _ in range(round(seconds * fps)):
        clock.now += 1 / fps
        gov.frame_sent(gov.limit(scale), busy)
        if gov.cap != cap:
            return


def test_governor_keeps_the_scale_while_the_egress_keeps_up() -> None:
    clock = Clock()
    gov = EgressGovernor(FPS, clock=clock)
    feed(gov, clock, 20, FPS, 4, 0.02)
    assert (gov.cap, gov.scale, gov.reason) == (4, 4, None)
    assert gov.as_dict()["effective_fps"] == pytest.approx(FPS, rel=0.01)


def test_governor_steps_down_one_scale_per_slow_window_and_says_why() -> None:
    clock = Clock()
    gov = EgressGovernor(FPS, clock=clock)
    changes: list[int] = []
    gov.listener = lambda: changes.append(gov.cap)
    feed(gov, clock, 1.5, 15, 4, 0.066)  # under a full window: no decision yet
    assert gov.cap == 4
    feed(gov, clock, 1.0, 15, 4, 0.066)
    assert gov.cap == 2
    assert changes == [2]
    assert gov.reason is not None
    assert "4x" in gov.reason
    assert "2x" in gov.reason
    feed(gov, clock, 1.5, 15, 2, 0.066)  # the new scale gets its own full window first
    assert gov.cap == 2
    feed(gov, clock, 1.0, 15, 2, 0.066)
    assert gov.cap == 1
    assert changes == [2, 1]
    feed(gov, clock, 5, 10, 1, 0.1)  # nothing below off: reported, not changed
    assert gov.cap == 1
    assert gov.as_dict()["effective_fps"] == pytest.approx(10, rel=0.02)


def test_governor_steps_back_up_only_after_the_hold_and_with_headroom() -> None:
    clock = Clock()
    gov = EgressGovernor(FPS, EgressPolicy(), clock=clock)
    feed(gov, clock, 2.5, 12, 4, 0.08)
    assert gov.cap == 2
    # at 2x each frame takes 10 ms: 4x the pixels is 40 ms, over 75 % of 41.7 ms: stays
    feed(gov, clock, 30, FPS, 2, 0.010)
    assert gov.cap == 2
    # 7 ms → 28 ms projected: fits, but only once the 10 s hold since the change is over
    gov2 = EgressGovernor(FPS, clock=clock)
    feed(gov2, clock, 2.5, 12, 4, 0.08)
    assert gov2.cap == 2
    feed(gov2, clock, 9, FPS, 2, 0.007)
    assert gov2.cap == 2
    feed(gov2, clock, 2, FPS, 2, 0.007)
    assert gov2.cap == 4
    assert gov2.reason is None


def test_a_one_off_stall_lowers_nothing() -> None:
    """Half a second without frames (another process had the CPU): the window is slow, but the
    egress is not busy per frame, so the scale stays."""
    clock = Clock()
    gov = EgressGovernor(FPS, clock=clock)
    feed(gov, clock, 3, FPS, 4, 0.01)
    clock.now += 0.5
    gov.frame_sent(4, 0.5)
    feed(gov, clock, 1.5, FPS, 4, 0.01)
    assert gov.cap == 4


def test_governor_starts_a_new_window_after_a_pause() -> None:
    clock = Clock()
    gov = EgressGovernor(FPS, clock=clock)
    feed(gov, clock, 1.9, FPS, 4, 0.01)
    clock.now += 5  # paused: not a slow egress
    feed(gov, clock, 3, FPS, 4, 0.01)
    assert gov.cap == 4


@dataclass
class Codec:
    mimeType: str  # noqa: N815  # aiortc's spelling


def test_answer_prefers_h264_without_dropping_codecs() -> None:
    offered = [Codec("video/VP8"), Codec("video/rtx"), Codec("video/H264"), Codec("video/H264")]
    ordered = encoders.prefer_codec(offered, encoders.H264)
    assert [c.mimeType for c in ordered] == ["video/H264"] * 2 + ["video/VP8", "video/rtx"]
    only_vp8 = [Codec("video/VP8"), Codec("video/rtx")]
    assert encoders.prefer_codec(only_vp8, encoders.H264) == only_vp8


def test_nvenc_is_chosen_only_where_it_opens() -> None:
    probed: list[str] = []

    def probe(ok: bool) -> Any:
        def run(choice: encoders.EncoderChoice) -> bool:
            probed.append(choice.codec_name)
            return ok

        return run

    both = {"libx264", "h264_nvenc"}
    assert encoders.choose_h264_encoder(both, True, probe(True), 2).codec_name == "h264_nvenc"
    fallback = encoders.choose_h264_encoder(both, True, probe(False), 2)
    assert fallback.codec_name == "libx264"
    assert fallback.options["preset"] == "ultrafast"
    assert probed == ["h264_nvenc", "h264_nvenc"]
    # no GPU, or FFmpeg without NVENC: not even probed
    assert encoders.choose_h264_encoder(both, False, probe(True), 16).threads == 4
    assert encoders.choose_h264_encoder({"libx264"}, True, probe(True), 1).threads == 1
    assert probed == ["h264_nvenc", "h264_nvenc"]


def test_this_machine_opens_its_choice_and_encodes_a_4x_frame() -> None:
    choice = encoders.h264_choice()
    encoder = encoders.RealtimeH264Encoder(choice)
    frame = video_frame(np.zeros((384, 640, 3), np.uint8), 4)
    frame.pts, frame.time_base = 0, encoders.fractions.Fraction(1, 90_000)
    payloads, _ = encoder.encode(frame, True)
    assert payloads
    assert encoder.codec.options.get("level") in (None, "50")


def test_video_frame_upscales_and_converts_in_one_pass() -> None:
    pixels = np.full((96, 160, 3), (200, 30, 60), np.uint8)
    frame = video_frame(pixels, 4)
    assert (frame.width, frame.height, frame.format.name) == (640, 384, "yuv420p")
    back = frame.reformat(format="rgb24").to_ndarray()
    assert np.abs(back.astype(int) - (200, 30, 60)).max() <= 4


class Deferrable:
    deferrable = True
    calls = 0

    def __call__(self, frames: Any, scale: int) -> Any:
        Deferrable.calls += 1
        return frames.repeat(scale, axis=1).repeat(scale, axis=2)


class Stream:
    chunk_index = 0

    def steps_in_chunk(self, index: int) -> int:
        return 1

    async def next_chunk(self, **_: Any) -> Any:
        return Result(np.zeros((3, 8, 8, 3), np.uint8))


@dataclass
class Result:
    frames: Any
    checkpoint: bytes | None = None


class Engine:
    async def open_stream(self, *_: Any, **__: Any) -> Stream:
        return Stream()


@pytest.mark.parametrize(("defer", "shape", "left"), [(True, 8, 4), (False, 32, 1)])
def test_driver_leaves_plain_resampling_to_an_egress_that_does_it(
    defer: bool, shape: int, left: int
) -> None:
    driver = StreamDriver(
        Engine(),  # type: ignore[arg-type]
        StreamOptions(8, 8, SamplingSettings()),
        Deferrable(),
        defer_resampling=defer,
    )
    made = asyncio.run(driver.make_chunk(0, Conditions("p", sr_scale=4), lambda: False))
    assert (made.frames.shape[1], made.scale) == (shape, left)
    buffer = FrameBuffer(FPS)
    buffer.push(MadeChunk(0, made.frames, "p", made.scale))
    out = buffer.pop_frame()
    assert out is not None
    assert out.scale == left


class SlowAt4x:
    """Stands in for an encoder too slow for 4x frames (80 ms each: 12 fps), fast below."""

    def __init__(self, inner: Any, slow_width: int) -> None:
        self._inner = inner
        self._slow_width = slow_width

    def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
        if frame.width >= self._slow_width:
            import time

            time.sleep(0.08)
        return self._inner.encode(frame, force_keyframe)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_slow_encoder_lowers_the_scale_over_a_real_peer_connection() -> None:
    """4x frames through the track, a real aiortc client: the encoder cannot do 24 fps at 4x,
    so within a few seconds the egress sends 2x and says why; 2x then keeps up."""
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from helios_serve.realtime.reactor.peer import PeerLink
    from helios_serve.realtime.reactor.track import PacedVideoTrack

    width, height = 160, 96

    async def main() -> EgressGovernor:
        buffer = FrameBuffer(FPS, 2)
        track = PacedVideoTrack(buffer, FPS, width, height)
        frames = np.random.default_rng(0).integers(0, 255, (33, height, width, 3), np.uint8)

        async def produce() -> None:
            index = 0
            while True:
                if buffer.has_room():
                    buffer.push(MadeChunk(index, frames, "p", 4))
                    index += 1
                await asyncio.sleep(0.05)

        client = RTCPeerConnection()
        transceiver = client.addTransceiver("video", direction="recvonly")
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if "H264" in c.mimeType]
        transceiver.setCodecPreferences(h264)
        await client.setLocalDescription(await client.createOffer())
        server = PeerLink(lambda *_: None, lambda *_: None, lambda *_: None)
        answer = await server.negotiate(client.localDescription.sdp, [], track)
        assert server.codec == "video/H264"
        sender = server._pc.getTransceivers()[0].sender
        sender._RTCRtpSender__encoder = SlowAt4x(sender._RTCRtpSender__encoder, 4 * width)
        await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        producer = asyncio.create_task(produce())
        try:
            for _ in range(100):
                await asyncio.sleep(0.1)
                if track.egress.cap < 4 and track.egress.scale == 2:
                    await asyncio.sleep(2.5)  # a full window at 2x: it holds
                    break
        finally:
            producer.cancel()
            await server.close()
            await client.close()
        return track.egress

    egress = asyncio.run(main())
    state = egress.as_dict()
    assert (egress.cap, state["effective_sr_scale"], state["sr_scale_cap"]) == (2, "2x", "2x")
    assert "4x" in (state["degraded_reason"] or "")
    assert state["effective_fps"] is not None
    assert state["effective_fps"] > 20


def test_session_reports_the_egress_and_makes_network_sr_at_its_cap() -> None:
    """An SR network upscales in the loop: once the egress lowers the cap, chunks are made at
    it, and `state` says so (a new `state` goes out at the change)."""
    import json

    from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
    from helios_serve.realtime.reactor.images import ImageLoader
    from helios_serve.realtime.reactor.session import Session

    from .conftest import EventLog, np_upscale
    from .test_session import RecordingSink

    async def main() -> None:
        clock = Clock()
        egress = EgressGovernor(FPS, clock=clock)
        log, sink = EventLog(), RecordingSink()
        session = Session(
            FakeEngine(FakeEngineConfig(step_delay_s=0.005)),
            StreamOptions(width=32, height=16, settings=SamplingSettings()),
            log,
            sink,
            ImageLoader(lambda ref: b""),
            np_upscale,
            commands_per_second=1000,
            egress=egress,
        )
        session.start()

        def send(name: str, data: dict[str, Any]) -> None:
            envelope = {"scope": "application", "data": {"type": name, "data": data}}
            session.receive(json.dumps(envelope))

        try:
            send("set_sr_scale", {"sr_scale": "4x"})
            send("set_prompt", {"prompt": "p"})
            send("start", {})
            await log.wait("chunk_complete", lambda d: d["chunk_index"] == 0)
            feed(egress, clock, 2.5, 12, 4, 0.08)  # the track saw a saturated egress
            state = await log.wait("state", lambda d: d["egress"]["sr_scale_cap"] == "2x")
            assert state["sr_scale"] == "4x"  # what the client asked for stays
            assert "4x" in state["egress"]["degraded_reason"]
            shown = len(sink.chunks)
            await log.wait("chunk_complete", lambda d: d["chunk_index"] == shown + 1)
        finally:
            await session.close()
        assert sink.chunks[0].shape[1:3] == (64, 128)  # 4x of 32x16
        assert sink.chunks[-1].shape[1:3] == (32, 64)  # 2x

    asyncio.run(main())
