"""The WebRTC video encoders a session uses, and the codec it prefers in the answer.

Measured with `helios bench-egress` (benchmarks/results/egress-*.md): aiortc's own H.264
encoder runs libx264 at its default preset (medium), 4-7x slower than `ultrafast` at 2x/4x SR
sizes, and H.264 at `ultrafast` encodes faster than VP8 at `cpu-used` -6 (libvpx gained nothing
from more threads or a higher cpu-used here). So the answer puts H.264 first when the client
offers it, and the sender gets `RealtimeH264Encoder`: libx264 `ultrafast`/`zerolatency`
threaded, or NVENC where a GPU can open it (`choose_h264_encoder`). VP8 keeps aiortc's encoder.

aiortc has no public hook for either: codec preferences are applied inside
setRemoteDescription (before the transceiver exists here) and the sender creates its encoder
lazily, so both are set on aiortc's (pinned) private attributes right after the offer is applied.
"""

from __future__ import annotations

import fractions
import logging
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from aiortc.codecs.h264 import MAX_FRAME_RATE, H264Encoder

logger = logging.getLogger(__name__)

H264 = "video/H264"
VP8 = "video/VP8"
NVENC = "h264_nvenc"
X264 = "libx264"
MAX_THREADS = 4
"""libx264 sliced threads: more only add latency-free overhead on small frames."""


def prefer_codec(codecs: list[Any], mime: str) -> list[Any]:
    """`codecs` with those of `mime` first (a stable reorder: nothing is dropped); the sender
    uses the first, so the answer's first codec is the one sent."""
    return sorted(codecs, key=lambda c: 0 if c.mimeType.lower() == mime.lower() else 1)


@dataclass(frozen=True)
class EncoderChoice:
    codec_name: str
    options: dict[str, str]
    threads: int
    why: str


def x264_choice(cpus: int) -> EncoderChoice:
    options = {"preset": "ultrafast", "tune": "zerolatency"}
    threads = max(1, min(MAX_THREADS, cpus))
    return EncoderChoice(X264, options, threads, "libx264 ultrafast (no usable NVENC)")


def nvenc_choice() -> EncoderChoice:
    # p1: the fastest preset; ull: ultra-low-latency tuning, no B-frames, no lookahead
    options = {"preset": "p1", "tune": "ull", "zerolatency": "1", "bf": "0", "delay": "0"}
    return EncoderChoice(NVENC, options, 0, "NVENC (a CUDA device opened it)")


def choose_h264_encoder(
    available: Collection[str],
    cuda_available: bool,
    probe: Callable[[EncoderChoice], bool],
    cpus: int,
) -> EncoderChoice:
    """NVENC when FFmpeg has it, a CUDA device is there and a tiny encoder really opens
    (`probe`: a driver without NVENC, or all sessions taken, fails only at open); else x264."""
    if NVENC in available and cuda_available:
        choice = nvenc_choice()
        if probe(choice):
            return choice
        logger.info("h264_nvenc is built in but did not open: encoding with libx264")
    return x264_choice(cpus)


def _open_probe(choice: EncoderChoice) -> bool:
    try:
        codec = _codec_context(choice, 256, 256, 500_000)
        frame = av.VideoFrame(256, 256, "yuv420p")
        list(codec.encode(frame))
        return True
    except Exception as exc:  # av.FFmpegError and friends: no usable device
        logger.info("%s probe failed: %s", choice.codec_name, exc)
        return False


def _cuda_available() -> bool:
    # the NVIDIA driver's control device; sessions never import torch (import contracts),
    # and the open probe is the real test
    return Path("/dev/nvidiactl").exists()


_chosen: EncoderChoice | None = None


def h264_choice() -> EncoderChoice:
    """This machine's H.264 encoder, chosen once per process."""
    global _chosen
    if _chosen is None:
        _chosen = choose_h264_encoder(
            av.codecs_available, _cuda_available(), _open_probe, os.cpu_count() or 1
        )
        logger.info("WebRTC H.264 encoder: %s", _chosen.why)
    return _chosen


def _level(width: int, height: int) -> str:
    """The lowest H.264 level whose frame size fits (the SDP allows level asymmetry)."""
    macroblocks = ((width + 15) // 16) * ((height + 15) // 16)
    for limit, level in ((3600, "31"), (5120, "32"), (8192, "40"), (22080, "50")):
        if macroblocks <= limit:
            return level
    return "51"


def _codec_context(choice: EncoderChoice, width: int, height: int, bitrate: int) -> Any:
    codec = av.CodecContext.create(choice.codec_name, "w")
    codec.width, codec.height = width, height
    codec.bit_rate = bitrate
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(MAX_FRAME_RATE, 1)
    codec.time_base = fractions.Fraction(1, MAX_FRAME_RATE)
    options = dict(choice.options)
    if choice.codec_name == X264:
        options["level"] = _level(width, height)
    codec.options = options
    codec.profile = "Baseline" if choice.codec_name == X264 else "baseline"
    if choice.threads:
        codec.thread_count = choice.threads
    return codec


class RealtimeH264Encoder(H264Encoder):  # type: ignore[misc]  # aiortc is untyped
    """aiortc's H.264 encoder (packetization, bitrate from REMB, keyframes on PLI) with the
    encoder context of `choice` instead of libx264 at its default preset."""

    codec: Any

    def __init__(self, choice: EncoderChoice) -> None:
        super().__init__()
        self.choice = choice

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Iterator[bytes]:
        codec = self.codec
        if codec is not None and (
            frame.width != codec.width
            or frame.height != codec.height
            or abs(self.target_bitrate - codec.bit_rate) / codec.bit_rate > 0.1
        ):
            self.buffer_data, self.buffer_pts, self.codec = b"", None, None
        frame.pict_type = (
            av.video.frame.PictureType.I if force_keyframe else av.video.frame.PictureType.NONE
        )
        if self.codec is None:
            self.codec = _codec_context(self.choice, frame.width, frame.height, self.target_bitrate)
        data = b"".join(bytes(packet) for packet in self.codec.encode(frame))
        if data:
            yield from self._split_bitstream(data)


def install_encoder(sender: Any, mime: str) -> str:
    """Give `sender` the session's encoder for `mime` before its first frame; its name."""
    if mime.lower() != H264.lower():
        return "aiortc " + mime.split("/")[-1]
    choice = h264_choice()
    sender._RTCRtpSender__encoder = RealtimeH264Encoder(choice)
    return choice.codec_name
