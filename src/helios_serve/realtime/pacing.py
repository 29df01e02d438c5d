"""Just-in-time generation: start chunk K+1 so that it is ready shortly before chunk K ends.

`ChunkTimer` keeps a running estimate of the engine's time per denoising step (so the first
chunk, amplified with more steps, scales) and of its variability, the way TCP estimates a
retransmission timeout (RFC 6298): smoothed mean plus four mean deviations. One slow chunk
(a job's chunk on the worker, a busy GPU) widens the lead at once, and it narrows again over
a few steady chunks. `until_due` waits until the next chunk's lead time before it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from helios_serve.realtime.playout import Playout

GAIN = 1 / 8
DEVIATION_GAIN = 1 / 4
DEVIATIONS = 4


@dataclass
class ChunkTimer:
    margin_s: float = 0.1
    """Fixed slack on top of the estimate (event loop, handing the chunk to the playout)."""
    step_s: float | None = None
    """Smoothed seconds per step (the decode shared out); None before any chunk."""
    deviation_s: float = 0.0
    open_s: float = 0.0
    """Smoothed seconds to reopen the stream at a kept boundary (a rollback)."""

    def observe(self, seconds: float, steps: int) -> None:
        """A chunk of `steps` steps took `seconds` from asking to getting it."""
        per_step = seconds / max(1, steps)
        if self.step_s is None:
            self.step_s, self.deviation_s = per_step, per_step / 2
            return
        error = per_step - self.step_s
        self.deviation_s += DEVIATION_GAIN * (abs(error) - self.deviation_s)
        self.step_s += GAIN * error

    def observe_open(self, seconds: float) -> None:
        first = self.open_s == 0.0
        self.open_s = seconds if first else self.open_s + GAIN * (seconds - self.open_s)

    def lead(self, steps: int) -> float | None:
        """Seconds before a chunk of `steps` steps is due to start making it (None: unknown)."""
        if self.step_s is None:
            return None
        return (self.step_s + DEVIATIONS * self.deviation_s) * steps + self.margin_s


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
