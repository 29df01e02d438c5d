"""Pixels over time in a `helios bench-realtime` steering run: stalls (repeated frames), the
effective playback rate and the share of the time on a frozen picture."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .realtime_analysis import ReceivedFrame


@dataclass(frozen=True)
class Stall:
    t: float
    """Arrival of the first repeated frame."""
    ticks: int


def stalls(frames: Sequence[ReceivedFrame]) -> list[Stall]:
    """Runs of repeated frames after the first coded one: a frame whose code equals the one
    before it is a tick where the server had nothing new to send (lost ticks in between count
    as repeats too)."""
    out: list[Stall] = []
    run_t, run = 0.0, 0
    started = False
    for a, b in itertools.pairwise(frames):
        started = started or a.code is not None
        repeat = started and b.code is not None and b.code == a.code
        if repeat:
            if run == 0:
                run_t = b.t
            run += b.tick - a.tick
        elif run:
            out.append(Stall(run_t, run))
            run = 0
    if run:
        out.append(Stall(run_t, run))
    return out


FROZEN_S = 0.1
"""A frame on screen longer than this (a rate under 10 fps) is a frozen picture."""


def playback(frames: Sequence[ReceivedFrame], fps: float) -> dict[str, Any]:
    """How the picture moved over `frames`, as a player shows it (by presentation time): new
    frames per second (the effective playback rate) and the time on a frozen frame (a new frame
    more than `FROZEN_S` after the one before: the time past one nominal frame interval counts),
    alone and as a share of the span; `arrival`: the same by arrival time at the client (what
    the transport and the client's own load add)."""
    new = [
        f
        for i, f in enumerate(frames)
        if f.code is not None and (i == 0 or f.code != frames[i - 1].code)
    ]
    by_pts = _moves([f.pts_s for f in new], fps) if all(f.pts_s is not None for f in new) else {}
    by_arrival = _moves([f.t for f in new], fps)
    return (by_pts or by_arrival) | {"arrival": by_arrival}


def _moves(times: Sequence[float | None], fps: float) -> dict[str, Any]:
    ts = [t for t in times if t is not None]
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return {"effective_fps": None, "frozen_s": 0.0, "frozen_share": None, "freezes": 0}
    span = ts[-1] - ts[0]
    frozen = [b - a - 1 / fps for a, b in itertools.pairwise(ts) if b - a > FROZEN_S]
    return {
        "effective_fps": round((len(ts) - 1) / span, 3),
        "frozen_s": round(sum(frozen), 3),
        "frozen_share": round(sum(frozen) / span, 4),
        "freezes": len(frozen),
    }


def stall_summary(found: Sequence[Stall], fps: float) -> dict[str, Any]:
    return {
        "count": len(found),
        "total_s": round(sum(s.ticks for s in found) / fps, 3),
        "max_s": round(max((s.ticks for s in found), default=0) / fps, 3),
    }


def playback_text(p: dict[str, Any] | None) -> str:
    if not p or p.get("effective_fps") is None:
        return "n/a"
    text = (
        f"{p['effective_fps']:.1f} fps effective, frozen {p['frozen_s']:.3f} s "
        f"({100 * (p['frozen_share'] or 0):.1f} %, {p['freezes']} freezes)"
    )
    arrival = p.get("arrival")
    if arrival and arrival.get("effective_fps") is not None:
        text += f"; by arrival: frozen {arrival['frozen_s']:.3f} s, {arrival['freezes']} freezes"
    return text
