"""Forecast: what the generation loop expects of the engine, from what it has seen.

From the chunk timer (`pacing.ChunkTimer`) and the way the last chunk's frames came (its
`Pattern`: each group of frames, how long after the first), it answers three questions:

- `supply`: when the next frames arrive, the rest of the chunk being made and then the next
  chunk's (`playback.Supply`: what playback slows for when the engine falls behind);
- `outlook`: what each landing of a change would cost (`steering.Outlook`);
- `let_go`: how soon the chunk being made reaches its next cancellation check (the end of its
  denoising step or of its decoded group), which a remake waits for.

`Flight` is the chunk being made, as the loop tracks it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from helios_serve.core.types import FRAMES_PER_CHUNK
from helios_serve.realtime.driver import Made
from helios_serve.realtime.pacing import ChunkTimer
from helios_serve.realtime.playout import MadeChunk, Playout
from helios_serve.realtime.steering import Outlook


@dataclass(eq=False)
class Flight:
    """The chunk being made."""

    index: int
    since: float
    """`time.perf_counter()` when making it began."""
    reopen: bool
    """It reopens the stream first."""
    abandoned: bool = False
    """A rollback reached it (or the loop stopped): nothing more of it goes out."""
    chunk: MadeChunk | None = None
    """On the playout since its first frames came."""
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(perf_counter, frames) of each group of frames handed over."""

    @property
    def delivered(self) -> int:
        return sum(count for _, count in self.arrivals)


Pattern = list[tuple[float, int]]
"""A chunk's groups of frames: (seconds after its first group, frames)."""


class Forecast:
    def __init__(self) -> None:
        self.timer = ChunkTimer()
        self.steps = 1
        """Steps of the last chunk made (the next one's, but for an amplified first chunk)."""
        self.pattern: Pattern = [(0.0, FRAMES_PER_CHUNK)]
        """How the last chunk's frames came (at first: whole)."""

    # ------------------------------------------------------------------ learning
    def observe(self, made: Made, arrivals: list[tuple[float, int]], playback_s: float) -> None:
        """Teach the timer when this chunk could play through, and when it was done."""
        t = self.timer
        if made.reopen_s is not None:
            t.observe_open(made.reopen_s)
        self.steps = made.steps
        if not arrivals:
            t.observe(made.engine_s, made.steps)
            return
        fps = FRAMES_PER_CHUNK / playback_s
        need, before = 0.0, 0
        for at, count in arrivals:  # each group must come before playback reaches it
            need = max(need, at - made.asked_at - before / fps)
            before += count
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
        first = arrivals[0][0]
        self.pattern = [(at - first, count) for at, count in arrivals]
        t.observe(
            need,
            made.steps,
            first_s=first - made.asked_at,
            whole_s=made.engine_s,
            group_s=sum(gaps) / len(gaps) if gaps else None,
        )

    # ------------------------------------------------------------------ questions
    def let_go(self, flight: Flight, now: float) -> float:
        """Seconds until the chunk being made reaches its next cancellation check."""
        t = self.timer
        group = t.group.mean or 0.0
        if t.first.mean is None or flight.arrivals:
            return group or (t.step_s or 0.0)
        denoise = max(0.0, t.first.mean * self.steps - group)
        elapsed = now - flight.since - (t.open_s if flight.reopen else 0.0)
        step = denoise / self.steps
        if 0.0 <= elapsed < denoise and step > 0:
            return step - elapsed % step
        return group or step

    def outlook(
        self, playout: Playout, flight: Flight | None, committed: int, claimed: int
    ) -> Outlook | None:
        """What landing a change on chunk `committed` or the next would cost (cautious)."""
        t = self.timer
        lead, to_boundary = t.lead(self.steps), playout.to_boundary()
        if lead is None or to_boundary is None:
            return None
        now = time.perf_counter()
        whole = t.expect_whole(self.steps) or lead
        # a remake waits for the engine: a chunk it drops lets go at its next check, the
        # chunk on screen still being decoded is finished first
        let_go = 0.0
        if flight is not None and not flight.abandoned:
            let_go = self.let_go(flight, now)
            if flight.index < committed:
                let_go = max(0.0, flight.since + whole - now)
        remake = let_go + t.open_s + lead
        next_ready, next_remake = 0.0, remake
        if flight is not None and flight.index == committed and not flight.abandoned:
            if flight.chunk is None:
                next_ready = max(0.0, flight.since + lead - now)
            if claimed <= committed + 1:  # chunk c + 1 is made after c
                next_remake = max(0.0, flight.since + whole - now) + lead
        stretch, chunk_stretch = playout.slack()
        return Outlook(
            to_boundary, remake, next_ready, next_remake, playout.playback_s,
            stretch, chunk_stretch,
        )  # fmt: skip

    def supply(
        self, playout: Playout, flight: Flight | None, *, wanted: bool, reopen: bool
    ) -> list[tuple[float, int]]:
        """When the next frames come: the groups still to come of the chunk being made, then
        those of the next chunk if one is `wanted` (`reopen`: it reopens the stream first)."""
        t = self.timer
        first, whole = t.expect_first(self.steps), t.expect_whole(self.steps)
        if first is None or whole is None:
            return []
        now, out = time.perf_counter(), []
        free = now  # when the engine can start the next chunk
        if flight is not None and flight.abandoned:
            free = now + (t.step_s or 0.0)
        elif flight is not None:
            asked = flight.since + (t.open_s if flight.reopen else 0.0)
            start = flight.arrivals[0][0] if flight.arrivals else asked + first
            for offset, count in self._after(flight.delivered):
                out.append((start + offset - now, count))
            free = max(start + self.pattern[-1][0], asked + whole)
        if wanted:
            left, lead = playout.time_left(), t.lead(self.steps)
            due = now + left - lead if left is not None and lead is not None else now
            start = max(free, due) + (t.open_s if flight is None and reopen else 0.0) + first
            out += [(start + offset - now, count) for offset, count in self.pattern]
        # an arrival already late is taken to be as late again
        return [(abs(seconds), count) for seconds, count in out]

    def _after(self, done: int) -> Pattern:
        """The groups of the pattern after its first `done` frames."""
        out, at = [], 0
        for offset, count in self.pattern:
            if at >= done:
                out.append((offset, count))
            at += count
        return out
