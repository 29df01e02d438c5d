"""PlaybackRate: the rate a session plays its frames at, following what the engine supplies.

A session plays at its nominal rate (the emission rate, or a rate it pinned) whenever the
frames it holds last until the next ones arrive. When they would not (an engine slower than
real time, a chunk remade after a command), it plays slower, down to `floor_fps`, so the
picture keeps moving instead of freezing on one frame, and it eases back up once frames come
in time again.

Before each frame the playout gives what it holds (`in_hand` frames not yet shown) and when
more are expected (`Supply`: seconds from now and how many frames, in order: the groups of the
chunk being decoded, then the first frames of the next chunk, as the generation loop estimates
them). The frames must last until each arrival: frame `in_hand + before` (the first of an
arrival) goes out no earlier than it comes, so the target is the least of
`(in_hand + before) / seconds` over the arrivals, with one nominal frame of cushion, within
[floor, nominal]. The rate moves toward it by at most `down_step` fps a frame (24 → 16 in 8
frames, a third of a second) and `up_step` fps a frame back up (16 → 24 in 32 frames): eased,
never a jump. A pinned session plays at its rate whatever comes (the old behaviour: it holds
its last frame while it waits).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Supply = Sequence[tuple[float, int]]
"""Expected arrivals of frames: (seconds from now, how many), in order."""
WINDOW_S = 2.0
"""Effective rate: frames shown over the last this many seconds."""


@dataclass(frozen=True)
class RatePolicy:
    floor_fps: float = 16.0
    down_step: float = 2.0
    """fps the rate may drop per frame."""
    up_step: float = 0.25
    """fps the rate may rise per frame."""
    cushion_frames: float = 1.0
    """Frames (at the nominal rate) the frames in hand should outlast each arrival by."""


class PlaybackRate:
    def __init__(
        self,
        nominal_fps: float,
        policy: RatePolicy | None = None,
        *,
        pinned: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RatePolicy()
        self.nominal = nominal_fps
        self.pinned = pinned
        self.floor = nominal_fps if pinned else min(self.policy.floor_fps, nominal_fps)
        self.fps = nominal_fps
        """The rate of the frame going out now."""
        self.target = nominal_fps
        self._clock = clock
        self._shown: deque[float] = deque()

    def target_for(self, in_hand: int, supply: Supply) -> float:
        """The rate at which `in_hand` frames last until each expected arrival."""
        cushion = self.policy.cushion_frames / self.nominal
        target = self.nominal
        before = in_hand
        for seconds, frames in supply:
            if before > 0:
                target = min(target, before / max(seconds + cushion, 1e-3))
            before += frames
        return min(self.nominal, max(self.floor, target))

    def step(self, in_hand: int, supply: Supply) -> float:
        """The rate for the next frame interval, eased toward the target."""
        if self.pinned:
            return self.fps
        self.target = self.target_for(in_hand, supply)
        return self.ease()

    def ease(self) -> float:
        """Move the rate one frame's step toward the target; the new rate."""
        if self.pinned:
            return self.fps
        p = self.policy
        change = min(p.up_step, max(-p.down_step, self.target - self.fps))
        self.fps = min(self.nominal, max(self.floor, self.fps + change))
        return self.fps

    def longest(self, frames: int) -> float:
        """Seconds `frames` frames can last from now, easing down to the floor at once."""
        fps, total = self.fps, 0.0
        for _ in range(frames):
            fps = max(self.floor, fps - (0.0 if self.pinned else self.policy.down_step))
            total += 1.0 / fps
        return total

    def shown(self) -> None:
        """A new frame went out (repeats do not count)."""
        now = self._clock()
        self._shown.append(now)
        while self._shown and now - self._shown[0] > WINDOW_S:
            self._shown.popleft()

    def effective_fps(self) -> float | None:
        """New frames per second over the last window (None before one second of them)."""
        now = self._clock()
        while self._shown and now - self._shown[0] > WINDOW_S:
            self._shown.popleft()
        if len(self._shown) < 2 or now - self._shown[0] < 1.0:
            return None
        return (len(self._shown) - 1) / (now - self._shown[0])

    def as_dict(self) -> dict[str, Any]:
        effective = self.effective_fps()
        return {
            "fps": round(self.fps, 2),
            "effective_fps": round(effective, 2) if effective is not None else None,
            "nominal_fps": self.nominal,
            "floor_fps": self.floor,
            "pinned": self.pinned,
        }
