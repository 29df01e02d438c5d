"""Playout: where made chunks wait to be shown, and what the generator may still change.

A chunk is *committed* once its first frame has gone to the client (the track sent it, the
socket sent its bytes); everything after that can still be dropped and made again. The
generator asks a playout when the next chunk is needed (`time_left`) to start it just in
time, and how long until the chunk on screen ends (`to_boundary`) to decide where a change
can land.

`FrameBuffer` is the WebRTC track's playout: whole chunks in, one frame per tick out
(`pop`, called by `PacedVideoTrack` at the emission rate). It knows the consumer's pace
from the ticks themselves, so while nobody pulls frames (no peer yet, the track paused) it
answers None and the generator falls back to filling it up to `max_chunks`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from helios_serve.core.types import FRAMES_PER_CHUNK, Frames

PULL_GAP_TICKS = 3
"""A consumer that has not pulled a frame for this many ticks is not playing."""


@dataclass(frozen=True, eq=False)
class MadeChunk:
    index: int
    frames: Frames
    prompt: str
    scale: int = 1
    """SR still to apply: the frames are at model size and the egress upscales them."""


@dataclass(frozen=True, eq=False)
class OutFrame:
    pixels: Frames
    scale: int


Started = Callable[[MadeChunk, int | None], None]
"""`started(chunk, pts)`: the first frame of `chunk` went out (at `pts` on the 90 kHz clock,
when the playout knows it)."""


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

    @property
    def playback_s(self) -> float:
        """Seconds one chunk plays for."""
        ...

    def has_room(self) -> bool: ...

    def push(self, chunk: MadeChunk) -> None:
        """Queue a chunk (the caller checked `has_room`)."""
        ...

    def drop_from(self, index: int) -> list[int]:
        """Forget queued chunks from `index` on (none of them has started); their indices."""
        ...

    def clear(self) -> None:
        """Drop everything (reset): the next chunk is 0 again."""
        ...

    def listen(self, started: Started, room: Callable[[], None]) -> None:
        """Who hears that a chunk started, and that room was freed."""
        ...


class FrameBuffer:
    """A bounded queue of whole chunks, read one frame at a time at `fps`."""

    resamples = True
    """Its consumer (the WebRTC track) applies a chunk's plain resampling SR itself."""

    def __init__(
        self, fps: float, max_chunks: int = 2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fps = fps
        self._max = max(1, max_chunks)
        self._clock = clock
        self._chunks: deque[MadeChunk] = deque()
        self._offset = 0  # frames already read from the first chunk
        self._committed = 0
        self._last_pull: float | None = None
        self._started: Started | None = None
        self._room: Callable[[], None] | None = None
        self.frames_out = 0

    def listen(self, started: Started, room: Callable[[], None]) -> None:
        self._started, self._room = started, room

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

    def has_room(self) -> bool:
        return self._waiting() < self._max

    def _waiting(self) -> int:
        """Chunks not yet started."""
        return len(self._chunks) - (1 if self._offset else 0)

    def push(self, chunk: MadeChunk) -> None:
        if len(chunk.frames):
            self._chunks.append(chunk)

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
        """The next frame (`pts`: the track's timestamp for it), or None when none is queued."""
        self._last_pull = self._clock()
        if not self._chunks:
            return None
        chunk = self._chunks[0]
        frame: Frames = chunk.frames[self._offset]
        if self._offset == 0:
            self._committed = chunk.index + 1
            if self._started is not None:
                self._started(chunk, pts)
        self._offset += 1
        if self._offset >= len(chunk.frames):
            self._chunks.popleft()
            self._offset = 0
            self._freed()
        self.frames_out += 1
        return OutFrame(frame, chunk.scale)

    def _freed(self) -> None:
        if self._room is not None:
            self._room()

    def _pulling(self) -> float | None:
        """When the consumer last pulled, if it is still pulling."""
        last = self._last_pull
        if last is None or self._clock() - last > PULL_GAP_TICKS / self._fps:
            return None
        return last

    def time_left(self) -> float | None:
        last = self._pulling()
        if last is None:
            return None
        frames = sum(len(c.frames) for c in self._chunks) - self._offset
        return max(0.0, last + frames / self._fps - self._clock())

    def to_boundary(self) -> float | None:
        last = self._pulling()
        if last is None:
            return None
        playing = self._playing()
        frames = len(playing.frames) - self._offset if playing is not None else 0
        return max(0.0, last + frames / self._fps - self._clock())
