"""Pure analysis of a `helios bench-realtime` run: which received frames are which chunk's.

How the server's `PacedVideoTrack` behaves (``realtime/reactor/track.py``): every tick of its clock
it pops one frame from the buffer, or repeats the last one when the buffer is empty, and stamps
it with the time it goes out on a 90 kHz clock. The bench pins the session's rate at the
emission rate (`extra_args.playback_fps`), so ticks are 1/emission_fps apart; aiortc's receiver
rebases the RTP timestamp to 0 at the first received frame, so ``tick = round(pts_seconds *
fps)`` counts the server's ticks since the first frame we saw, and a missing tick is a frame
lost in transport.

When the server sends ``chunk_shown`` with the pts of each chunk's first frame (this server
does), that tick is where the chunk starts: exact. Otherwise (older servers), the rule below:
chunks were appended to the buffer whole, and ``chunk_complete`` was emitted right after the
append with no ``await`` in between. So the buffer could only run dry *between* chunks: chunk K+1
either starts exactly ``frames(K)`` ticks after chunk K did (it was already queued), or, after a
stall of repeated frames, at the first tick scheduled after its ``chunk_complete`` left the
server. The tick schedule in client time is ``offset + tick / fps``, where ``offset`` is the
smallest ``arrival - tick / fps`` of the run (the frame that was least late). Comparing pixels
does not work in general: the tiny model's late frames in a chunk differ by ~0.01 grey levels
after VP8, as little as a repeated frame's codec refinement does.

The timing rule has a bias: the event and the video take different paths (SCTP vs encode, RTP,
jitter buffer, decode), so near a tick it can pick the neighbouring one. After a long stall the
pixels are unambiguous (a run of identical repeats, then new content), so there the start is
refined to the first of the ticks around the timing estimate whose luma change stands out, and
those verified starts calibrate the bias used for the others (`calibrate_bias`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from helios_serve.core.framecode import FrameCode

VIDEO_CLOCK_RATE = 90_000
MIN_STALL_FOR_PIXELS = 6
"""Stalls shorter than this are left to timing: their repeats still carry codec refinement."""
SETTLE_TICKS = 3
"""Repeats right after new content still change a little (VP8 refines them); skip these."""
MIN_CHANGE = 0.5
"""Grey levels: the least mean luma change counted as new content after a stall."""


@dataclass(frozen=True)
class ReceivedFrame:
    t: float
    """Client arrival time, seconds since the run's origin."""
    tick: int
    """Server tick index since the first received frame."""
    luma_diff: float
    """Mean absolute luma change from the previous received frame (grey levels; 0 for the first)."""
    code: FrameCode | None = None
    """What the frame says it is, when the server paints frame codes (the paced test engine)."""
    pts_s: float | None = None
    """Its presentation time (seconds since the first received frame): when a player with a
    jitter buffer shows it, whatever the transport did to its arrival."""


@dataclass(frozen=True)
class ChunkDone:
    index: int
    t: float
    """Client time the `chunk_complete` event arrived."""
    frames: int
    prompt: str
    shown_tick: int | None = None
    """The tick of its first frame, from the server's `chunk_shown` pts (when it sends one)."""


@dataclass(frozen=True)
class ChunkPlayback:
    index: int
    first_tick: int
    stall_frames: int
    """Repeated frames played just before this chunk (0: it was queued in time)."""
    first_frame_t: float
    """Arrival of its first frame (the next received one if that frame was lost)."""
    pixel_shift: int | None = None
    """Ticks the pixel check moved the timing estimate (None: not checked, no long stall)."""


def tick_of(pts: int, time_base: float, fps: float) -> int:
    return round(pts * time_base * fps)


def schedule_offset(frames: Sequence[ReceivedFrame], fps: float) -> float:
    """Client time of tick 0 on the server's schedule, as seen through the least-late frame."""
    return min(f.t - f.tick / fps for f in frames)


def arrival_at(frames: Sequence[ReceivedFrame], tick: int) -> float | None:
    """Arrival of the frame at `tick`, or of the next received one (lost frames); None if none."""
    ticks = [f.tick for f in frames]
    i = int(np.searchsorted(ticks, tick))
    return frames[i].t if i < len(frames) else None


def chunk_playback(
    frames: Sequence[ReceivedFrame],
    chunks: Sequence[ChunkDone],
    fps: float,
    first_tick: int,
    bias_s: float = 0.0,
) -> list[ChunkPlayback]:
    """Where each chunk's frames sit in the received stream (see the module docstring).

    `chunks` must be contiguous from index 0; `first_tick` is the first tick received after
    `start` was sent (chunk 0 cannot start earlier); `bias_s` is added to each chunk_complete
    arrival before it is compared with the tick schedule (see `calibrate_bias`).
    """
    if not frames:
        return []
    offset = schedule_offset(frames, fps)
    by_tick = {f.tick: f for f in frames}
    out: list[ChunkPlayback] = []
    earliest = first_tick
    for chunk in sorted(chunks, key=lambda c: c.index):
        by_time = math.ceil((chunk.t + bias_s - offset) * fps - 1e-9)
        start = max(earliest, by_time)
        shift = None
        if chunk.shown_tick is not None and chunk.shown_tick >= earliest:
            start = chunk.shown_tick  # the server said which tick: exact
        elif start - earliest >= MIN_STALL_FOR_PIXELS:
            refined = _after_stall(by_tick, earliest, start)
            if refined is not None:
                shift = refined - start
                start = refined
        t = arrival_at(frames, start)
        if t is None:
            break  # not played yet within the run
        out.append(ChunkPlayback(chunk.index, start, start - earliest, t, shift))
        earliest = start + chunk.frames
    return out


def calibrate_bias(
    frames: Sequence[ReceivedFrame],
    chunks: Sequence[ChunkDone],
    playback: Sequence[ChunkPlayback],
    fps: float,
) -> float | None:
    """The event-vs-video delay that puts each pixel-verified chunk start where pixels saw it.

    A verified start n* means its chunk_complete fell in the tick slot before n*; the middle of
    that slot, as an offset from the event's arrival, is one sample. The median of the samples
    then places the starts that pixels cannot verify (short stalls). None without samples.
    """
    if not frames:
        return None
    offset = schedule_offset(frames, fps)
    at = {c.index: c.t for c in chunks}
    samples = [
        (p.first_tick - 0.5) / fps - (at[p.index] - offset)
        for p in playback
        if p.pixel_shift is not None and p.index in at
    ]
    return float(np.median(samples)) if samples else None


def _after_stall(by_tick: dict[int, ReceivedFrame], stall_start: int, estimate: int) -> int | None:
    """The first tick around `estimate` whose luma change stands out from the stall's repeats."""
    settled = [
        by_tick[n].luma_diff
        for n in range(stall_start + SETTLE_TICKS, estimate - 1)
        if n in by_tick
    ]
    noise = float(np.median(settled)) if settled else 0.0
    threshold = max(MIN_CHANGE, 10 * noise)
    for n in (estimate - 1, estimate, estimate + 1):
        frame = by_tick.get(n)
        if frame is not None and frame.luma_diff > threshold:
            return n
    return None


def summary(values: Sequence[float], scale: float = 1.0, digits: int = 4) -> dict[str, float]:
    """mean, std, p50/p95/p99, min, max of `values` times `scale`; `n` the count."""
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=np.float64) * scale
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    out = {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "min": float(a.min()),
        "max": float(a.max()),
    }
    rounded: dict[str, float] = {k: round(v, digits) for k, v in out.items()}
    rounded["n"] = len(values)
    return rounded


def first_content_by_pixels(
    frames: Sequence[ReceivedFrame], after_tick: int, threshold: float = 2.0
) -> ReceivedFrame | None:
    """The first frame from `after_tick` on that changed visibly (black placeholder → video)."""
    for f in frames:
        if f.tick >= after_tick and f.luma_diff > threshold:
            return f
    return None
