"""Where a change lands: the first chunk that a new prompt, image or strength applies to.

Chunks already on screen are fixed; every chunk after them can be dropped and made again
from the stream state kept at its boundary. A change can land on chunk `c`, the first not on
screen (remade from now), or on `c + 1` (chunk `c` plays as made). `Outlook` is what the loop
expects of each choice: when the change would show, and how long the screen would hold its
last frame meanwhile, once playback has slowed as far as it may (down to its floor rate,
`playback.py`: the `stretch` before `c` is due, `chunk_stretch` over one chunk) to bridge the
wait. `extra_args.latency` weighs the two:

- `smooth` (default): never a hold a later landing would avoid.
- `balanced`: a hold is taken only if it brings the change forward by at least half
  its own length; otherwise the change lands one chunk later, without it.
- `low`: the change shows as soon as it can, whatever the hold.

A paused session changes nothing already made: its commands apply when it resumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

HOLD_WEIGHT = {"low": 0.0, "balanced": 0.5, "smooth": math.inf}
"""Seconds of delay one second of hold is worth avoiding, per mode."""
SAME = 1e-6


class LatencyMode(StrEnum):
    LOW = "low"
    BALANCED = "balanced"
    SMOOTH = "smooth"


@dataclass(frozen=True)
class Outlook:
    """Seconds from now, as the loop expects them when a change comes."""

    to_boundary: float
    """Until chunk `c` is due on screen."""
    remake: float
    """Until chunk `c` would be remade (the chunk being made let go, the stream reopened)."""
    next_ready: float
    """Until chunk `c`, as made now, is ready (0 when it is)."""
    next_remake: float
    """Until chunk `c + 1` would be ready: made after `c`, or remade now if it was made."""
    chunk: float
    """One chunk's playback at the nominal rate."""
    stretch: float = 0.0
    """How much later than `to_boundary` chunk `c` can be due if playback slows to its floor."""
    chunk_stretch: float = 0.0
    """How much longer one chunk can play at the floor rate."""

    def landing_now(self) -> tuple[float, float]:
        """(when the change shows, how long the screen holds before it) landing on `c`."""
        shows = max(self.to_boundary, self.remake)
        return shows, max(0.0, shows - self.to_boundary - self.stretch)

    def landing_next(self) -> tuple[float, float]:
        """The same, landing on `c + 1`: the holds before `c` and before `c + 1`."""
        c_shows = max(self.to_boundary, self.next_ready)
        shows = max(c_shows + self.chunk, self.next_remake)
        holds_c = max(0.0, c_shows - self.to_boundary - self.stretch)
        return shows, holds_c + max(0.0, shows - c_shows - self.chunk - self.chunk_stretch)


def landing_chunk(mode: LatencyMode, committed: int, claimed: int, outlook: Outlook | None) -> int:
    """The first chunk a change applies to; chunks from it on that were made are remade.

    `committed`: chunks on screen; `claimed`: chunks made or being made; `outlook`: None
    while nobody plays or before any chunk was timed (no deadline to weigh: the first chunk
    not on screen).
    """
    if claimed <= committed:
        return claimed  # nothing made past the screen: the next chunk made takes it
    if outlook is None:
        return committed
    now_shows, now_holds = outlook.landing_now()
    next_shows, next_holds = outlook.landing_next()
    weight = HOLD_WEIGHT[mode.value]
    if math.isinf(weight):  # smooth: only a landing that adds no hold
        if now_holds > next_holds + SAME:
            return committed + 1
        weight = 0.0
    now_cost, next_cost = now_shows + weight * now_holds, next_shows + weight * next_holds
    if abs(now_cost - next_cost) <= SAME:  # as good either way: the one that holds less
        return committed if now_holds <= next_holds else committed + 1
    return committed if now_cost < next_cost else committed + 1
