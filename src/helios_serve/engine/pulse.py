"""EnginePulse: whether a busy engine is still stepping, judged on its own measured pace.

The stall timeout (`ProcessEngine`) restarts an engine only after minutes, long enough for the
first chunk of a compiled model. `/ready` should turn sooner: once the engine has shown how
often it reports (the gaps between its messages while calls are in flight), a silence of
`factor` times the longest recent gap (never under `floor_s`) means it is not making progress
now, and `/ready` says 503 until a message comes again. Before any gap is measured, nothing is
judged (the stall timeout still is).
"""

from __future__ import annotations

from collections import deque

READY_STALL_FACTOR = 5.0
"""How many of the slowest recent gaps of silence make a busy engine "not stepping"."""
READY_FLOOR_S = 5.0
"""Never judged stalled sooner than this (a garbage collection, a decode, a slow save)."""
GAPS_KEPT = 32
MIN_GAPS = 3
"""Gaps measured before a silence is judged at all."""


class EnginePulse:
    def __init__(
        self, *, factor: float = READY_STALL_FACTOR, floor_s: float = READY_FLOOR_S
    ) -> None:
        self.factor = factor
        self.floor_s = floor_s
        self._gaps: deque[float] = deque(maxlen=GAPS_KEPT)
        self._last: float | None = None

    def start(self, now: float) -> None:
        """A call begins on an idle engine: silence counts from here, not from the last call."""
        self._last = now

    def beat(self, now: float, busy: bool) -> None:
        """A message from the engine; `busy` while calls are in flight (idle gaps mean nothing)."""
        if busy and self._last is not None:
            self._gaps.append(max(0.0, now - self._last))
        self._last = now

    def limit_s(self) -> float | None:
        """How long a busy engine may stay silent before it counts as stalled (None: unmeasured)."""
        if len(self._gaps) < MIN_GAPS:
            return None
        return max(self.floor_s, self.factor * max(self._gaps))

    def stalled(self, now: float, busy: bool) -> bool:
        limit = self.limit_s()
        if not busy or limit is None or self._last is None:
            return False
        return now - self._last > limit
