"""Fragmented MP4 (H.264) built chunk by chunk: each chunk's bytes are ready once it is encoded.

FFmpeg's mp4 muxer closes a fragment only when the *next* packet arrives (`frag_keyframe`) or on
an explicit `av_write_frame(NULL)` flush (`frag_custom`), which PyAV does not expose. A single
long-lived muxer would therefore always hold the newest chunk back until the next one exists.

Instead every chunk is encoded by a fresh encoder into a complete in-memory fragmented MP4 of
its own (so it starts with an IDR frame), and only its `moof+mdat` is kept: the first chunk also
contributes the init segment (`ftyp+moov`). Each muxer numbers its lone fragment 1 and starts
its decode time at 0, so those two fields are rewritten to continue the stream. Encoders with
identical settings write identical parameter sets (SPS/PPS), so the first chunk's `moov`
describes every fragment; that is checked, not assumed.

Frames are timed on a `CLOCK` Hz track clock, each with its own duration (`1/fps` unless the
caller gives others: a session that plays slower while its engine falls behind).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from helios_serve.media.encode import video_encoder_name

_STSD_PATH = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")
_AVCOL_BT709 = 1
_AVCOL_RANGE_MPEG = 1
CLOCK = 60_000
"""Track clock (Hz): whole ticks for the usual rates, and under MPEG-4 Part 2's 65535 limit."""


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, size) of the boxes between `start` and `end`."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        if size < 8 or start + size > end:
            raise ValueError(f"malformed MP4 box {kind!r} at offset {start}")
        yield kind, start, size
        start += size


def _find(data: bytes | bytearray, path: tuple[bytes, ...]) -> tuple[int, int]:
    """(offset, size) of the first box at `path`, e.g. (b"moof", b"traf", b"tfdt")."""
    start, end = 0, len(data)
    for depth, name in enumerate(path):
        for kind, offset, size in _boxes(data, start, end):
            if kind == name:
                if depth == len(path) - 1:
                    return offset, size
                start, end = offset + 8, offset + size
                break
        else:
            raise ValueError(f"MP4 box {b'/'.join(path[: depth + 1])!r} not found")
    raise ValueError("empty box path")


def _timescale(init: bytes) -> int:
    offset, _ = _find(init, (b"moov", b"trak", b"mdia", b"mdhd"))
    version = init[offset + 8]
    field = offset + (28 if version == 1 else 20)  # after the creation/modification times
    return int(struct.unpack_from(">I", init, field)[0])


class FragmentedMp4Encoder:
    """`encode(frames)` → the next piece of one fragmented MP4 stream (init + first fragment)."""

    def __init__(self, width: int, height: int, fps: int, crf: int = 20) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
        self.width, self.height, self.fps, self.crf = width, height, fps, crf
        self.frames_written = 0
        self._ticks = 0
        """Ticks of `CLOCK` written so far: the next fragment's decode time."""
        self._fragments = 0
        self._stsd = b""
        self._timescale = 0

    def encode(
        self, frames: npt.NDArray[np.uint8], durations: Sequence[float] | None = None
    ) -> bytes:
        """One chunk (T, H, W, 3) uint8 RGB → its fragment (blocking: call it in a thread);
        `durations`: seconds each frame plays for (default 1/fps)."""
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or not len(frames):
            raise ValueError(
                f"expected (T, {self.height}, {self.width}, 3) frames, got {frames.shape}"
            )
        if durations is not None and (
            len(durations) != len(frames) or not all(0 < d < 60 for d in durations)
        ):
            raise ValueError("durations: one positive number of seconds (< 60) per frame")
        ticks = self._ticks_of(durations or [1 / self.fps] * len(frames))
        data = self._standalone(frames, ticks)
        stsd_at, stsd_size = _find(data, _STSD_PATH)
        stsd = data[stsd_at : stsd_at + stsd_size]
        kept = bytearray()
        for kind, offset, size in _boxes(data, 0, len(data)):
            if kind in (b"moof", b"mdat") or (self._fragments == 0 and kind in (b"ftyp", b"moov")):
                kept += data[offset : offset + size]
        if self._fragments == 0:
            self._stsd, self._timescale = stsd, _timescale(data)
            if self._timescale % CLOCK:  # decode times below must be exact
                raise RuntimeError(
                    f"track timescale {self._timescale} is not a multiple of {CLOCK}"
                )
        elif stsd != self._stsd:
            raise RuntimeError("the encoder's parameter sets changed between chunks")
        self._fragments += 1
        mfhd, _ = _find(kept, (b"moof", b"mfhd"))
        struct.pack_into(">I", kept, mfhd + 12, self._fragments)
        tfdt, _ = _find(kept, (b"moof", b"traf", b"tfdt"))
        decode_time = self._ticks * (self._timescale // CLOCK)
        if kept[tfdt + 8] == 1:
            struct.pack_into(">Q", kept, tfdt + 12, decode_time)
        else:
            struct.pack_into(">I", kept, tfdt + 12, decode_time)
        self.frames_written += len(frames)
        self._ticks += sum(ticks)
        return bytes(kept)

    def _ticks_of(self, durations: Sequence[float]) -> list[int]:
        """Whole clock ticks per frame, rounded on the running total (no drift)."""
        out, total = [], 0.0
        for seconds in durations:
            start = round(total * CLOCK)
            total += seconds
            out.append(max(1, round(total * CLOCK) - start))
        return out

    def _standalone(self, frames: npt.NDArray[np.uint8], ticks: Sequence[int]) -> bytes:
        """A complete fragmented MP4 holding just these frames, as one fragment."""
        buf = io.BytesIO()
        # skip_trailer: the per-file random-access index (mfra) would be wrong once concatenated.
        flags = "frag_keyframe+empty_moov+default_base_moof+skip_trailer"
        container: Any = av.open(buf, mode="w", format="mp4", options={"movflags": flags})
        try:
            codec = video_encoder_name()
            # One IDR at the chunk start and no B-frames, so decode order is presentation order
            # and a fragment never needs a frame from another one.
            options = {"g": str(len(frames) + 1), "bf": "0", "sc_threshold": "0"}
            if codec == "libx264":
                options |= {"crf": str(self.crf), "preset": "veryfast", "profile": "main"}
            stream = container.add_stream(codec, rate=self.fps, options=options)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            ctx = stream.codec_context
            ctx.time_base = Fraction(1, CLOCK)
            if codec != "libx264":
                ctx.bit_rate = int(self.width * self.height * self.fps * 0.15)
            # BT.709 limited range, like Mp4Writer, so decoders map YUV back to the same RGB.
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = _AVCOL_BT709
            ctx.color_range = _AVCOL_RANGE_MPEG
            waiting = list(ticks)  # no B-frames: packets come out in frame order

            def mux(packets: list[Any]) -> None:
                for packet in packets:
                    packet.duration = waiting.pop(0)  # the muxer's last sample needs it
                    container.mux(packet)

            pts = 0
            for rgb, duration in zip(np.ascontiguousarray(frames), ticks, strict=True):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = frame.reformat(format="yuv420p", dst_colorspace="itu709", dst_color_range=1)
                frame.pts, frame.time_base = pts, Fraction(1, CLOCK)
                pts += duration
                mux(stream.encode(frame))
            mux(stream.encode(None))
        finally:
            container.close()
        return buf.getvalue()
