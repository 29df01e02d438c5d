"""Chunk segments: every chunk's frames as a small MP4 of their own, joined by copying packets.

A job writes one segment per chunk as the chunk arrives, so a job that is stopped (crash,
`kill -9`, restart) keeps every chunk it finished, and the final MP4 is the segments joined
without re-encoding. Each segment is encoded on its own (it starts with a keyframe and
references nothing outside itself) by an encoder with fixed settings and a fixed thread count,
and the mux writes no timestamps, so the same frames always give the same bytes: a resumed job
and an extension that continues a finished video produce exactly the file an uninterrupted run
would have.

These files are our own output; they are opened as trusted files (client uploads go through
`media.decode`, which sniffs and caps them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from helios_serve.errors import InvalidInputError
from helios_serve.media.encode import Mp4Writer, fsync_file


@dataclass(frozen=True)
class Part:
    """Frames `[0, frames)` of the MP4 at `path` (all of them when `frames` is None).

    A part must end on a segment boundary: a cut inside a segment would drop frames that
    others in it reference.
    """

    path: Path
    frames: int | None = None


def write_segment(path: Path, frames: npt.NDArray[np.uint8], fps: int) -> None:
    """Encode `frames` (T, H, W, 3) as one self-contained MP4, published atomically."""
    _, height, width, _ = frames.shape
    with Mp4Writer(path, width, height, fps=fps) as writer:
        writer.write(frames)


def _open(path: Path) -> tuple[Any, Any]:
    container = av.open("file:" + str(path.absolute()), mode="r")
    if not container.streams.video:
        container.close()
        raise InvalidInputError(f"{path.name} has no video stream")
    return container, container.streams.video[0]


def frame_count(path: Path) -> int:
    """Frames in one of our MP4s (from its index: no decoding)."""
    container, stream = _open(path)
    try:
        return int(stream.frames)
    finally:
        container.close()


def join_segments(parts: Sequence[Part], out: Path, fps: int) -> int:
    """Write the parts one after another into `out` (atomically, fast-start); returns frames."""
    if not parts:
        raise ValueError("nothing to join")
    tmp = out.with_name(out.name + ".part")
    output = av.open(
        "file:" + str(tmp.absolute()), mode="w", format="mp4", options={"movflags": "+faststart"}
    )
    try:
        target: Any = None
        offset = 0
        for part in parts:
            container, stream = _open(part.path)
            try:
                if target is None:
                    target = output.add_stream_from_template(stream)
                    # The template carries the first part's bit rates (from its `btrt` box);
                    # left there, the output would depend on which file came first.
                    target.codec_context.bit_rate = 0
                offset += _copy_packets(container, stream, part.frames, output, target, offset, fps)
            finally:
                container.close()
        output.close()
        fsync_file(tmp)
        os.replace(tmp, out)
    except BaseException:
        output.close()
        tmp.unlink(missing_ok=True)
        raise
    return offset


def _copy_packets(
    container: Any, stream: Any, limit: int | None, output: Any, target: Any, offset: int, fps: int
) -> int:
    """Mux the packets of frames [0, limit) shifted by `offset` frames; returns frames taken."""
    time_base: Fraction = stream.time_base
    ticks_per_frame = Fraction(1, fps) / time_base
    if ticks_per_frame.denominator != 1:
        raise ValueError(f"time base {time_base} cannot hold {fps} fps frames exactly")
    start = stream.start_time or 0
    shift = int(offset * ticks_per_frame) - start
    taken = 0
    for packet in container.demux(stream):
        if packet.dts is None:  # the demuxer's end-of-stream marker
            continue
        index = round((packet.pts - start) / ticks_per_frame)
        if limit is not None and index >= limit:
            continue
        packet.pts += shift
        packet.dts += shift
        packet.stream = target
        output.mux(packet)
        taken += 1
    return taken


def iter_frames(path: Path) -> Iterator[npt.NDArray[np.uint8]]:
    """Decode one of our MP4s frame by frame as RGB (T is not held in memory)."""
    container, stream = _open(path)
    try:
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
    finally:
        container.close()
