"""`helios bench-egress`: the WebRTC egress alone, per SR scale and negotiated codec.

One process runs the session's real egress path: the paced test engine (no model) makes chunks
through the session's `Generation` (so the SR upscale happens where a session does it), a
`FrameBuffer` plays them out at the emission rate to the session's `PacedVideoTrack`, the
server's `PeerLink` answers, and a real aiortc client (the offer restricted to one codec, or
offering VP8 then H.264 like a browser) receives and decodes over loopback. Per case it reports
the negotiated codec and encoder, upscale time per frame (in the generation loop), colour
conversion per frame (the egress's own frame preparation, timed apart on a sample frame),
encode time per frame (the sender's encoder, wrapped), frames delivered per second at the client,
frames the track had to repeat (the buffer ran dry), and CPU cores the process used.

The client decodes in the same process, on the same cores: its decode time is in `cores`. On a
shared machine the numbers are noisy; `load_before` / `load_after` say how busy it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CODEC_CHOICES = ("vp8", "h264", "browser")
"""`browser`: the client offers VP8 then H.264 (Chrome's order); the server's answer picks."""
MIME = {"vp8": "video/VP8", "h264": "video/H264"}


@dataclass
class CaseResult:
    scale: int
    offer: str
    codec: str = ""
    encoder: str = ""
    width: int = 0
    height: int = 0
    upscale_ms: float = 0.0
    """Per frame, in the generation loop (0 when the egress upscales)."""
    convert_ms: float = 0.0
    """Per frame: the egress's frame preparation (colour conversion, and a deferred upscale)."""
    encode_ms: float = 0.0
    """Per frame, wall time inside the sender's encoder (its own conversion included)."""
    delivered_fps: float = 0.0
    sent_fps: float = 0.0
    repeats: int = 0
    frames_received: int = 0
    max_gap_ms: float = 0.0
    cores: float = 0.0
    effective_scale: int = 0
    """The scale the egress was sending at the end (after any degradation)."""
    notes: list[str] = field(default_factory=list)


def register_egress(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "bench-egress",
        help="measure the WebRTC egress alone (SR upscale, conversion, encode) per scale/codec",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scales", default="1,2,4", help="SR scales, e.g. 1,2,4")
    parser.add_argument("--codecs", default="vp8,h264,browser", help=f"of {CODEC_CHOICES}")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--fps", type=float, default=24.0, help="emission rate")
    parser.add_argument("--chunk-s", type=float, default=0.3, help="paced engine s per chunk")
    parser.add_argument("--warmup-s", type=float, default=6.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured steady state")
    parser.add_argument("--out", type=Path, help="PREFIX: writes PREFIX.json and PREFIX.md")
    parser.add_argument("--label", default="", help="a name for this run in the report")
    parser.add_argument(
        "--slow-encoder-ms",
        type=float,
        default=0.0,
        help="add MS to every encode of a 2560x1536 frame (scaled by pixels for other sizes): "
        "a stand-in for an encoder that cannot keep up, to see the degradation rule act",
    )
    parser.set_defaults(handler=run_egress)


def run_egress(args: argparse.Namespace) -> int:
    scales = [int(s) for s in args.scales.split(",") if s]
    codecs = [c for c in args.codecs.split(",") if c]
    bad = [c for c in codecs if c not in CODEC_CHOICES]
    if bad or any(s not in (1, 2, 4) for s in scales):
        print(f"helios bench-egress: error: bad --codecs {bad} or --scales", file=sys.stderr)
        return 2
    for noisy in ("aioice", "aiortc"):  # per-packet INFO lines would drown the table
        logging.getLogger(noisy).setLevel(logging.WARNING)
    load_before = os.getloadavg()
    results = []
    for scale in scales:
        for offer in codecs:
            result = asyncio.run(_case(args, scale, offer))
            print(_row(result), file=sys.stderr, flush=True)
            results.append(result)
    report = {
        "benchmark": "egress",
        "label": args.label,
        "command": "helios " + " ".join(sys.argv[1:]),
        "cpu_count": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "model_size": [args.width, args.height],
        "emission_fps": args.fps,
        "slow_encoder_ms": args.slow_encoder_ms,
        "cases": [asdict(r) for r in results],
    }
    table = format_table(report)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table + "\n")
    return 0


HEADER = (
    "| scale | offer | codec | encoder | size | upscale ms | convert ms | encode ms "
    "| delivered fps | sent fps | repeats | max gap ms | cores | eff. scale |"
)


def _row(r: CaseResult) -> str:
    return (
        f"| {r.scale}x | {r.offer} | {r.codec} | {r.encoder} | {r.width}x{r.height} "
        f"| {r.upscale_ms:.1f} | {r.convert_ms:.1f} | {r.encode_ms:.1f} "
        f"| {r.delivered_fps:.1f} | {r.sent_fps:.1f} | {r.repeats} | {r.max_gap_ms:.0f} "
        f"| {r.cores:.2f} | {r.effective_scale}x |"
    )


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"`{report['command']}` ({report['label'] or 'unlabelled'}; "
        f"{report['cpu_count']} CPUs, load {report['load_before']} → {report['load_after']})",
        "",
        HEADER,
        "|" + "---|" * 14,
    ]
    lines += [_row(CaseResult(**c)) for c in report["cases"]]
    notes = [f"- {c['scale']}x {c['offer']}: {n}" for c in report["cases"] for n in c["notes"]]
    if notes:
        lines += ["", "Degradation (the egress governor's reason):", *notes]
    return "\n".join(lines)


class _Timed:
    """Wall seconds and items of the calls through it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.items = 0
        self.on = False

    def add(self, seconds: float, items: int) -> None:
        if self.on:
            self.seconds += seconds
            self.items += items

    def per_item_ms(self) -> float:
        return 1000 * self.seconds / self.items if self.items else 0.0


SLOW_REFERENCE_PIXELS = 2560 * 1536


class _TimedEncoder:
    """Wraps the sender's encoder: times `encode` (slowed by `slow_s` at 4x when asked),
    passes everything else through."""

    def __init__(self, inner: Any, timed: _Timed, slow_s: float = 0.0) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_timed", timed)
        object.__setattr__(self, "_slow_s", slow_s)

    def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
        start = time.perf_counter()
        if self._slow_s:
            time.sleep(self._slow_s * frame.width * frame.height / SLOW_REFERENCE_PIXELS)
        out = self._inner.encode(frame, force_keyframe)
        self._timed.add(time.perf_counter() - start, 1)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def _encoder_name(encoder: Any) -> str:
    inner = getattr(encoder, "_inner", encoder)
    codec = getattr(inner, "codec", None)
    name = getattr(codec, "name", None) or type(inner).__name__
    choice = getattr(inner, "choice", None)  # the server's own encoder says what it set
    options = getattr(choice, "options", None) or getattr(codec, "options", None) or {}
    detail = ",".join(f"{k}={options[k]}" for k in ("preset", "cpu-used") if k in options)
    threads = getattr(codec, "thread_count", None)
    return f"{name}" + (f" {detail}" if detail else "") + (f" t={threads}" if threads else "")


def _sample_frames(width: int, height: int, count: int = 33) -> Any:
    """Smooth moving gradients with some noise: neither trivial nor pure noise to encode."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t, ..., 0] = (xx + 4 * t) % 256
        frames[t, ..., 1] = (2 * yy + t) % 256
        frames[t, ..., 2] = ((xx + yy) // 3 + 2 * t) % 256
    noise = rng.integers(-6, 7, frames.shape)
    return (frames.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)


def _convert_ms(frame: Any, scale: int) -> float:
    """The egress's per-frame preparation, timed on one frame."""
    from helios_serve.realtime.reactor import track as track_module

    prepare: Callable[[Any, int], Any] | None = getattr(track_module, "video_frame", None)
    if prepare is None:  # before: rgb24 out; the encoder converts to yuv420p itself
        from av import VideoFrame

        def prepare(f: Any, _scale: int) -> Any:
            return VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(
                format="yuv420p"
            )

    prepare(frame, scale)
    start, n = time.perf_counter(), 10
    for _ in range(n):
        prepare(frame, scale)
    return 1000 * (time.perf_counter() - start) / n


class _TimedUpscaler:
    """The session's resampler, timed; deferrable like it (then the egress upscales)."""

    def __init__(self, resampler: Any, timed: _Timed) -> None:
        self._resampler = resampler
        self._timed = timed
        self.deferrable = getattr(resampler, "deferrable", False)

    def __call__(self, frames: Any, scale: int) -> Any:
        start = time.perf_counter()
        out = self._resampler(frames, scale)
        self._timed.add(time.perf_counter() - start, len(frames))
        return out


class _Source:
    """Every chunk wanted, all at one SR scale, nothing steered."""

    def __init__(self, scale: int) -> None:
        self.index = 0
        self.scale = scale

    def wanted(self) -> bool:
        return True

    def claim(self) -> Any:
        from helios_serve.realtime.driver import Conditions
        from helios_serve.realtime.generation import Claimed

        self.index += 1
        return Claimed(self.index - 1, Conditions(prompt="egress", sr_scale=self.scale, seed=1))

    def unclaim(self, chunk: int) -> None:
        self.index = chunk

    def made(self, *_: Any) -> None:
        return None

    def started(self, *_: Any) -> None:
        return None

    def failed(self, *_: Any) -> bool:
        return True


def _counting_buffer(fps: float) -> Any:
    """A `FrameBuffer` that counts the ticks it had no frame for (the track repeats one)."""
    from helios_serve.realtime.playout import FrameBuffer

    class CountingBuffer(FrameBuffer):
        repeats = 0
        counting = False

        def pop_frame(self, pts: int | None = None) -> Any:
            frame = super().pop_frame(pts)
            if frame is None and self.counting:
                self.repeats += 1
            return frame

    return CountingBuffer(fps, 2)


async def _client(offer: str) -> tuple[Any, list[float], asyncio.Event]:
    """A recvonly aiortc client offering only `offer`'s codecs, counting decoded frames."""
    from aiortc import RTCPeerConnection, RTCRtpSender

    client = RTCPeerConnection()
    transceiver = client.addTransceiver("video", direction="recvonly")
    codecs = RTCRtpSender.getCapabilities("video").codecs
    wanted = ["video/VP8", "video/H264"] if offer == "browser" else [MIME[offer]]
    transceiver.setCodecPreferences([c for m in wanted for c in codecs if c.mimeType == m])
    received: list[float] = []
    measuring = asyncio.Event()

    async def consume(remote: Any) -> None:
        while True:
            try:
                await remote.recv()
            except Exception:
                return
            if measuring.is_set():
                received.append(time.perf_counter())

    client.on("track", lambda remote: asyncio.ensure_future(consume(remote)))
    await client.setLocalDescription(await client.createOffer())
    return client, received, measuring


def _time_encoder(sender: Any, timed: _Timed, slow_s: float) -> Callable[[], None]:
    """Wrap the sender's encoder (the one the server installed, or aiortc's own when it is
    created); returns the undo."""
    from aiortc import rtcrtpsender

    original = rtcrtpsender.get_encoder
    installed = getattr(sender, "_RTCRtpSender__encoder", None)
    if installed is not None:
        sender._RTCRtpSender__encoder = _TimedEncoder(installed, timed, slow_s)
    else:
        rtcrtpsender.get_encoder = lambda codec: _TimedEncoder(original(codec), timed, slow_s)

    def undo() -> None:
        rtcrtpsender.get_encoder = original

    return undo


def _ignore(*_: Any) -> None:
    return None


async def _case(args: argparse.Namespace, scale: int, offer: str) -> CaseResult:
    from aiortc import RTCSessionDescription

    from helios_serve.core.settings import SamplingSettings
    from helios_serve.engine.paced import PacedEngine, PacedTiming
    from helios_serve.engine.sr import TorchResampler
    from helios_serve.realtime.driver import StreamOptions
    from helios_serve.realtime.generation import Generation
    from helios_serve.realtime.reactor.peer import PeerLink
    from helios_serve.realtime.reactor.track import PacedVideoTrack

    result = CaseResult(scale, offer)
    upscale_timed, encode_timed = _Timed(), _Timed()
    resampler = TorchResampler()
    engine = PacedEngine(PacedTiming(args.chunk_s))
    options = StreamOptions(args.width, args.height, SamplingSettings())
    buffer = _counting_buffer(args.fps)
    upscaler = _TimedUpscaler(resampler, upscale_timed)
    generation = Generation(engine, options, upscaler, buffer, _Source(scale))
    track = PacedVideoTrack(buffer, args.fps, args.width, args.height)

    client, received, measuring = await _client(offer)
    server = PeerLink(_ignore, _ignore, _ignore)
    answer = await server.negotiate(client.localDescription.sdp, [], track)
    await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    sender = server._pc.getTransceivers()[0].sender
    result.codec = _negotiated(answer)
    undo = _time_encoder(sender, encode_timed, args.slow_encoder_ms / 1000)
    generation.start()
    try:
        await asyncio.sleep(args.warmup_s)
        upscale_timed.on = encode_timed.on = buffer.counting = True
        sent_before = buffer.frames_out + buffer.repeats
        measuring.set()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.seconds)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        measuring.clear()
        buffer.counting = False
        sent = buffer.frames_out + buffer.repeats - sent_before
        encoder = getattr(sender, "_RTCRtpSender__encoder", None)
        result.encoder = _encoder_name(encoder) if encoder is not None else "?"
    finally:
        undo()
        await generation.stop()
        await server.close()
        await client.close()
    wall = wall1 - wall0
    result.cores = round((cpu1 - cpu0) / wall, 2)
    result.frames_received = len(received)
    result.delivered_fps = round(len(received) / wall, 2)
    result.sent_fps = round(sent / wall, 2)
    result.repeats = buffer.repeats
    gaps = np.diff(received) if len(received) > 1 else np.array([wall])
    result.max_gap_ms = round(1000 * float(gaps.max()), 1)
    result.upscale_ms = round(upscale_timed.per_item_ms(), 2)
    result.encode_ms = round(encode_timed.per_item_ms(), 2)
    frame = _sample_frames(args.width, args.height, 1)[0]
    deferred = upscaler.deferrable
    full = frame if scale == 1 or deferred else resampler(frame[None], scale)[0]
    result.convert_ms = round(_convert_ms(full, scale if deferred else 1), 2)
    result.width, result.height = args.width * scale, args.height * scale
    egress = getattr(track, "egress", None)
    result.effective_scale = int(egress.scale) if egress is not None else scale
    if egress is not None and egress.reason:
        result.notes.append(egress.reason)
    return result


def _negotiated(answer_sdp: str) -> str:
    """The first codec of the answer's video m-line (the one the sender uses)."""
    lines = answer_sdp.splitlines()
    video = next((line for line in lines if line.startswith("m=video")), "")
    parts = video.split()
    if len(parts) < 4:
        return "?"
    first = parts[3]
    for line in lines:
        if line.startswith(f"a=rtpmap:{first} "):
            return line.split()[1].split("/")[0]
    return "?"
