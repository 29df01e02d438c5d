"""EgressGovernor: the SR scale the WebRTC egress can really send at the emission rate.

The track tells it about every frame it hands to the sender (`frame_sent`: the scale the frame
went at, and how long the egress was busy with the previous one: preparing it, encoding and
sending it). It measures the delivered frame rate over a sliding window and applies one rule:

- **down**: sending upscaled frames (2x or 4x), a full window (`window_s`, 2 s) delivered
  under `down_ratio` (90 %) of the emission rate, and the egress saturated: its median busy time
  per frame at least `busy_ratio` (90 %) of a frame interval (so a one-off stall, or a generator
  that is behind, lowers nothing) → the scale cap drops one step (4x → 2x → off); the window
  restarts, so the next step down needs another full window at the new scale.
- **up**: sending at the cap, below 4x, at least `hold_s` (10 s) since the last change, the
  window at ≥ `up_fps_ratio` (98 %) of the rate, and the egress busy time per frame, scaled by the
  pixel ratio of the next step (4x the pixels), fits in `up_headroom` (75 %) of a frame interval
  → the cap goes back up one step.

Both directions are reported in the session's `state` (`egress`): effective fps, the scale
frames go at, the cap, and why it was lowered. The egress never lowers the frame rate itself:
at 1x there is nothing left to give up, and the state says so. While playback runs slower than
the emission rate (the engine behind, `playback`), the delivered rate is judged against the
rate playback asked for (`frame_sent(..., target_fps)`), not the emission rate.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SR_STEPS = (1, 2, 4)
LABELS = {1: "off", 2: "2x", 4: "4x"}


@dataclass(frozen=True)
class EgressPolicy:
    window_s: float = 2.0
    down_ratio: float = 0.9
    busy_ratio: float = 0.9
    up_fps_ratio: float = 0.98
    up_headroom: float = 0.75
    hold_s: float = 10.0
    gap_reset_s: float = 1.0
    """A gap this long between frames (a pause, a reconnect) starts a new window."""


class EgressGovernor:
    def __init__(
        self,
        fps: float,
        policy: EgressPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fps = fps
        self.policy = policy or EgressPolicy()
        self._clock = clock
        self.cap = SR_STEPS[-1]
        """The highest scale the egress may send at now."""
        self.scale = 1
        """The scale of the last frame sent."""
        self.reason: str | None = None
        self.changes = 0
        self._times: deque[float] = deque()
        self._busy: deque[float] = deque()
        self._targets: deque[float] = deque()
        self._changed_at = clock()
        self._last_fps: float | None = None
        self.listener: Callable[[], None] | None = None
        """Called after the cap changed (the session reports its state)."""
        self.codec: str | None = None
        self.encoder: str | None = None

    def limit(self, scale: int) -> int:
        """`scale` as the egress may send it."""
        return min(scale, self.cap)

    def reset_window(self) -> None:
        self._times.clear()
        self._busy.clear()
        self._targets.clear()

    def frame_sent(self, scale: int, busy_s: float, target_fps: float | None = None) -> None:
        """A frame went out at `scale`; `target_fps`: the rate playback asked for (default:
        the emission rate)."""
        now = self._clock()
        if self._times and now - self._times[-1] > self.policy.gap_reset_s:
            self.reset_window()
        self.scale = scale
        self._times.append(now)
        self._busy.append(busy_s)
        self._targets.append(self.fps if target_fps is None else target_fps)
        while self._times and now - self._times[0] > self.policy.window_s:
            self._times.popleft()
            self._busy.popleft()
            self._targets.popleft()
        fps = self._window_fps(now)
        if fps is not None:
            self._last_fps = fps
            self._decide(now, fps, sum(self._targets) / len(self._targets))

    def _window_fps(self, now: float) -> float | None:
        """Frames per second over a full window, None until the window is full."""
        times = self._times
        if len(times) < 2 or now - self._window_start() < self.policy.window_s * 0.95:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

    def _window_start(self) -> float:
        # the window is full only once it spans `window_s` since the last reset
        return max(self._times[0], self._changed_at) if self._times else self._clock()

    def _decide(self, now: float, fps: float, target: float) -> None:
        p = self.policy
        saturated = statistics.median(self._busy) >= p.busy_ratio / self.fps
        if self.scale > 1 and fps < p.down_ratio * target and saturated:
            lower = SR_STEPS[SR_STEPS.index(self.scale) - 1]
            self._change(
                now,
                lower,
                f"egress delivered {fps:.1f} fps < {p.down_ratio:.0%} of {target:.3g} at "
                f"{LABELS[self.scale]}: SR lowered to {LABELS[lower]}",
            )
            return
        if (
            self.scale == self.cap < SR_STEPS[-1]
            and now - self._changed_at >= p.hold_s
            and fps >= p.up_fps_ratio * target
        ):
            higher = SR_STEPS[SR_STEPS.index(self.cap) + 1]
            busy = sum(self._busy) / len(self._busy)
            projected = busy * (higher / self.cap) ** 2
            if projected <= p.up_headroom / self.fps:
                self._change(now, higher, None)

    def _change(self, now: float, cap: int, reason: str | None) -> None:
        self.cap = cap
        self.reason = reason
        self.changes += 1
        self._changed_at = now
        self.reset_window()
        if self.listener is not None:
            self.listener()

    def as_dict(self) -> dict[str, Any]:
        fps = self._last_fps
        return {
            "effective_fps": round(fps, 2) if fps is not None else None,
            "target_fps": self.fps,
            "effective_sr_scale": LABELS.get(self.scale, f"{self.scale}x"),
            "sr_scale_cap": LABELS[self.cap],
            "degraded_reason": self.reason,
            "codec": self.codec,
            "encoder": self.encoder,
        }
