"""Just-in-time generation: start chunk K+1 so that its frames are ready shortly before chunk K
ends.

`ChunkTimer` keeps running estimates of the engine's time per denoising step (so the first
chunk, amplified with more steps, scales) and of their variability, the way TCP estimates a
retransmission timeout (RFC 6298): smoothed mean plus four mean deviations. One slow chunk
(a job's chunk on the worker, a busy GPU) widens the lead at once, and it narrows again over
a few steady chunks. With progressive delivery a chunk is needed when its *first* frames are:
the lead is the time from asking for a chunk until it can play from its first frame without
waiting for a later one (`need`), not until its decode ends (`whole`). `until_due` waits until
the next chunk's lead time before it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from helios_serve.realtime.playout import Playout

GAIN = 1 / 8
DEVIATION_GAIN = 1 / 4
DEVIATIONS = 4
FORECAST_DEVIATIONS = 2
"""Forecasts of when frames arrive (what playback slows for) take less caution than the lead:
two deviations of what was seen, none assumed."""


@dataclass
class Estimate:
    """A smoothed mean and mean deviation of what was observed."""

    mean: float | None = None
    deviation: float = 0.0
    """Mean deviation, first taken as half the first value (RFC 6298: cautious at first)."""
    spread: float = 0.0
    """Mean deviation as seen, from 0 (what forecasts take: they should not guess high)."""

    def observe(self, value: float) -> None:
        if self.mean is None:
            self.mean, self.deviation = value, value / 2
            return
        error = value - self.mean
        self.deviation += DEVIATION_GAIN * (abs(error) - self.deviation)
        self.spread += DEVIATION_GAIN * (abs(error) - self.spread)
        self.mean += GAIN * error

    def cautious(self, deviations: float) -> float | None:
        return None if self.mean is None else self.mean + deviations * self.deviation

    def expected(self) -> float | None:
        """As forecasts take it: the mean plus `FORECAST_DEVIATIONS` of the spread seen."""
        return None if self.mean is None else self.mean + FORECAST_DEVIATIONS * self.spread


@dataclass
class ChunkTimer:
    margin_s: float = 0.1
    """Fixed slack on top of the estimate (event loop, handing the chunk to the playout)."""
    need: Estimate = field(default_factory=Estimate)
    """Per step: asking for a chunk → it can play through from its first frame."""
    first: Estimate = field(default_factory=Estimate)
    """Per step: asking for a chunk → its first frames."""
    whole: Estimate = field(default_factory=Estimate)
    """Per step: asking for a chunk → its last frames (the decode shared out)."""
    group: Estimate = field(default_factory=Estimate)
    """Seconds between two groups of decoded frames."""
    open_s: float = 0.0
    """Smoothed seconds to reopen the stream at a kept boundary (a rollback)."""

    @property
    def step_s(self) -> float | None:
        """Smoothed seconds per step, the decode shared out; None before any chunk."""
        return self.whole.mean

    @property
    def deviation_s(self) -> float:
        return self.need.deviation

    def observe(
        self,
        seconds: float,
        steps: int,
        *,
        first_s: float | None = None,
        whole_s: float | None = None,
        group_s: float | None = None,
    ) -> None:
        """A chunk of `steps` steps could play through `seconds` after it was asked for (its
        first frames came after `first_s`, its last after `whole_s`; both `seconds` when the
        chunk came whole), with `group_s` between its groups of frames."""
        steps = max(1, steps)
        self.need.observe(seconds / steps)
        self.first.observe((seconds if first_s is None else first_s) / steps)
        self.whole.observe((seconds if whole_s is None else whole_s) / steps)
        if group_s is not None:
            self.group.observe(group_s)

    def observe_open(self, seconds: float) -> None:
        first = self.open_s == 0.0
        self.open_s = seconds if first else self.open_s + GAIN * (seconds - self.open_s)

    def lead(self, steps: int) -> float | None:
        """Seconds before a chunk of `steps` steps is due to start making it (None: unknown)."""
        need = self.need.cautious(DEVIATIONS)
        return None if need is None else need * steps + self.margin_s

    def expect_first(self, steps: int) -> float | None:
        """Seconds from asking for a chunk to its first frames, as forecasts take it."""
        first = self.first.expected()
        return None if first is None else first * steps

    def expect_whole(self, steps: int) -> float | None:
        whole = self.whole.expected()
        return None if whole is None else whole * steps

    def expect_group(self) -> float:
        return self.group.expected() or 0.0


async def until_due(
    playout: Playout,
    timer: ChunkTimer,
    steps: int,
    wake: asyncio.Event,
    wanted: Callable[[], bool],
) -> None:
    """Return once the next chunk should be started: when it is due within its lead time, or,
    while nobody plays the playout, as soon as it has room (the old fill-the-buffer pacing).
    `wake` is set by anything that changes the answer (room freed, a rollback, a command);
    returns early once `wanted()` is False."""
    while wanted():
        wake.clear()
        if not playout.has_room():
            await wake.wait()
            continue
        left, lead = playout.time_left(), timer.lead(steps)
        if left is None or lead is None or left <= lead:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), left - lead)
