"""Playout: where made chunks wait to be shown, and what the generator may still change.

A chunk is *committed* once its first frame has gone to the client (the track sent it, the
socket sent its bytes); everything after that can still be dropped and made again. The
generator asks a playout when the next chunk is needed (`time_left`) to start it just in
time, and how long until the chunk on screen ends (`to_boundary`) to decide where a change
can land; both at the nominal rate.

Chunks arrive progressively: a `MadeChunk` is queued when its first frames are decoded and
grows group by group until it is `complete`. `FrameBuffer` is the WebRTC track's playout: one
frame per tick out (`pop`, called by `PacedVideoTrack`), read as soon as it is decoded, so a
chunk may start playing before its decode ends. It plays at the rate its `PlaybackRate` sets
(playback.py: the nominal rate, or slower while the engine cannot keep up) from the frames it
holds and the `Supply` the generator expects. It knows the consumer's pace from the ticks
themselves, so while nobody pulls frames (no peer yet, the track paused) it answers None and
the generator falls back to filling it up to `max_chunks`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from helios_serve.core.types import FRAMES_PER_CHUNK, Frames
from helios_serve.realtime.playback import PlaybackRate, Supply

PULL_GAP_TICKS = 3
"""A consumer that has not pulled a frame for this many ticks is not playing."""


class MadeChunk:
    """A chunk on its way to the screen. Given `frames` it is whole; without, it grows as its
    frames are decoded (`add`) until `finish`."""

    def __init__(
        self,
        index: int,
        frames: Frames | None,
        prompt: str,
        scale: int = 1,
        expected: int = FRAMES_PER_CHUNK,
    ) -> None:
        self.index = index
        self.prompt = prompt
        self.scale = scale
        """SR still to apply: the frames are at model size and the egress upscales them."""
        self.expected = expected
        """Frames it will hold once complete."""
        self._frames: list[Frames] = []
        self.complete = False
        self.durations: list[float] | None = None
        """Seconds each frame plays for, when the playout sets them (a socket's fragment)."""
        if frames is not None:
            self.add(frames)
            self.finish()

    @property
    def ready(self) -> int:
        """Frames decoded so far."""
        return len(self._frames)

    @property
    def pending(self) -> int:
        """Frames still to come."""
        return 0 if self.complete else max(0, self.expected - self.ready)

    def add(self, frames: Frames) -> None:
        self._frames.extend(frames)  # views of the group, one per frame

    def finish(self) -> None:
        self.complete = True
        self.expected = self.ready

    def frame(self, i: int) -> Frames:
        return self._frames[i]

    @property
    def frames(self) -> Frames:
        """Every frame decoded so far, stacked (T, H, W, 3)."""
        return np.stack(self._frames) if self._frames else np.zeros((0, 0, 0, 3), np.uint8)

    @property
    def num_frames(self) -> int:
        return self.ready


@dataclass(frozen=True, eq=False)
class OutFrame:
    pixels: Frames
    scale: int


Started = Callable[[MadeChunk, int | None], None]
"""`started(chunk, pts)`: the first frame of `chunk` went out (at `pts` on the 90 kHz clock,
when the playout knows it)."""
SupplyForecast = Callable[[], Supply]
"""What the generator expects to hand over next (see `playback.Supply`)."""


class Playout(Protocol):
    @property
    def committed(self) -> int:
        """Chunks whose first frame has gone out: they can no longer change."""
        ...

    def time_left(self) -> float | None:
        """Seconds until the first chunk not queued here is due, or None while nobody plays."""
        ...

    def to_boundary(self) -> float | None:
        """Seconds until chunk `committed` is due, or None while nobody plays."""
        ...

    def slack(self) -> tuple[float, float]:
        """Seconds that playing slower can add: before chunk `committed` is due, and over one
        whole chunk (0, 0 when the rate is pinned)."""
        ...

    @property
    def playback_s(self) -> float:
        """Seconds one chunk plays for, at the nominal rate."""
        ...

    def has_room(self) -> bool: ...

    def push(self, chunk: MadeChunk) -> None:
        """Queue a chunk, whole or with its first frames (the caller checked `has_room`)."""
        ...

    def grew(self, chunk: MadeChunk) -> None:
        """A queued chunk got more frames, or was finished."""
        ...

    def drop_from(self, index: int) -> list[int]:
        """Forget queued chunks from `index` on (none of them has started); their indices."""
        ...

    def clear(self) -> None:
        """Drop everything (reset): the next chunk is 0 again."""
        ...

    def listen(self, started: Started, room: Callable[[], None], supply: SupplyForecast) -> None:
        """Who hears that a chunk started and that room was freed, and who says what comes."""
        ...

    def playback(self) -> dict[str, Any]:
        """The playback rate, for the session's `state`."""
        ...


class FrameBuffer:
    """A bounded queue of chunks, read one frame at a time at the rate `rate` sets."""

    resamples = True
    """Its consumer (the WebRTC track) applies a chunk's plain resampling SR itself."""

    def __init__(
        self,
        fps: float,
        max_chunks: int = 2,
        clock: Callable[[], float] = time.monotonic,
        rate: PlaybackRate | None = None,
    ) -> None:
        self.rate = rate or PlaybackRate(fps, clock=clock)
        self._fps = self.rate.nominal
        self._max = max(1, max_chunks)
        self._clock = clock
        self._chunks: deque[MadeChunk] = deque()
        self._offset = 0  # frames already read from the first chunk
        self._committed = 0
        self._last_pull: float | None = None
        self._started: Started | None = None
        self._room: Callable[[], None] | None = None
        self._supply: SupplyForecast = lambda: ()
        self.frames_out = 0

    def listen(self, started: Started, room: Callable[[], None], supply: SupplyForecast) -> None:
        self._started, self._room, self._supply = started, room, supply

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def playback_s(self) -> float:
        return FRAMES_PER_CHUNK / self._fps

    @property
    def queued_chunks(self) -> int:
        """Chunks not fully played (the one playing included)."""
        return len(self._chunks)

    @property
    def queued(self) -> tuple[MadeChunk, ...]:
        """Those chunks, the one playing first."""
        return tuple(self._chunks)

    def has_room(self) -> bool:
        return self._waiting() < self._max

    def _waiting(self) -> int:
        """Chunks not yet started."""
        return len(self._chunks) - (1 if self._offset else 0)

    def push(self, chunk: MadeChunk) -> None:
        if chunk.ready or not chunk.complete:
            self._chunks.append(chunk)

    def grew(self, chunk: MadeChunk) -> None:  # noqa: ARG002  # read as it grows
        self._retire()

    def drop_from(self, index: int) -> list[int]:
        playing = self._playing()
        dropped = [c.index for c in self._chunks if c.index >= index and c is not playing]
        self._chunks = deque(c for c in self._chunks if c.index < index or c is playing)
        if dropped:
            self._freed()
        return dropped

    def _playing(self) -> MadeChunk | None:
        return self._chunks[0] if self._chunks and self._offset else None

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self._committed = 0
        self._freed()

    def pop(self, pts: int | None = None) -> Frames | None:
        """The next frame's pixels (see `pop_frame`)."""
        item = self.pop_frame(pts)
        return item.pixels if item is not None else None

    def pop_frame(self, pts: int | None = None) -> OutFrame | None:
        """The next frame (`pts`: the track's timestamp for it), or None when none is decoded
        yet; then `interval()` is how long until the next pull."""
        self._last_pull = self._clock()
        self._retire()
        self.rate.step(self._in_hand(), self._supply())
        if not self._chunks or self._offset >= self._chunks[0].ready:
            return None
        chunk = self._chunks[0]
        frame = chunk.frame(self._offset)
        if self._offset == 0:
            self._committed = chunk.index + 1
            if self._started is not None:
                self._started(chunk, pts)
        self._offset += 1
        self._retire()
        self.frames_out += 1
        self.rate.shown()
        return OutFrame(frame, chunk.scale)

    def interval(self) -> float:
        """Seconds until the next frame should go out."""
        return 1.0 / self.rate.fps

    def _retire(self) -> None:
        """Let go of the first chunk once it is complete and fully read."""
        if self._chunks and self._chunks[0].complete and self._offset >= self._chunks[0].ready:
            self._chunks.popleft()
            self._offset = 0
            self._freed()

    def _in_hand(self) -> int:
        return sum(c.ready for c in self._chunks) - self._offset

    def _freed(self) -> None:
        if self._room is not None:
            self._room()

    def _pulling(self) -> float | None:
        """When the consumer last pulled, if it is still pulling."""
        last = self._last_pull
        if last is None or self._clock() - last > PULL_GAP_TICKS / self.rate.floor:
            return None
        return last

    def _to_play(self, chunks: list[MadeChunk]) -> int:
        """Frames of `chunks` (the first one playing) not yet shown, counting those to come."""
        return sum(c.ready + c.pending for c in chunks) - (self._offset if chunks else 0)

    def time_left(self) -> float | None:
        last = self._pulling()
        if last is None:
            return None
        frames = self._to_play(list(self._chunks))
        return max(0.0, last + frames / self._fps - self._clock())

    def to_boundary(self) -> float | None:
        last = self._pulling()
        if last is None:
            return None
        playing = self._playing()
        frames = self._to_play([playing]) if playing is not None else 0
        return max(0.0, last + frames / self._fps - self._clock())

    def slack(self) -> tuple[float, float]:
        playing = self._playing()
        frames = self._to_play([playing]) if playing is not None else 0
        whole = self.rate.longest(FRAMES_PER_CHUNK) - self.playback_s
        return max(0.0, self.rate.longest(frames) - frames / self._fps), max(0.0, whole)

    def playback(self) -> dict[str, Any]:
        return self.rate.as_dict()
