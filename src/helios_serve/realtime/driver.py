"""StreamDriver: keeps one engine stream in line with the conditions of each chunk, and keeps
the stream's state at every boundary not yet on screen so it can go back to one.

Each chunk is asked for with its checkpoint (`Stream.next_chunk(checkpoint=True)`), kept as
the `Boundary` after it with the conditions the stream was in. `rewind(b)` makes the next
chunk `b` again: the stream is reopened from the state kept at boundary `b` (a fresh stream
with the same seed for 0) and the chunk's conditions are applied to it, so a remade chunk is
exactly what a stream that had those conditions from that boundary makes. Boundaries before
the one on screen are forgotten (`forget_before`): a session keeps a handful of small states.

Image strength is mapped plainly: 0 drops the anchor, anything above 0 anchors the stream on the
image from the next chunk (history kept, so the video drifts toward it), and exactly 1.0 makes a
new image a hard cut (the stream's history restarts on the image). Nothing finer is claimed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from helios_serve.core.protocols import (
    CancelCheck,
    Engine,
    FramesCallback,
    Priority,
    Stream,
    Upscaler,
)
from helios_serve.core.requests import draw_seed
from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import DecodedFrames, Frames
from helios_serve.realtime.steering import LatencyMode


@dataclass(frozen=True)
class StreamOptions:
    """The fixed settings of the stream a session opens at `start`."""

    width: int
    height: int
    settings: SamplingSettings
    prompt_blend_chunks: int = 1
    latency: LatencyMode = LatencyMode.SMOOTH
    """Where a change lands (see `steering`)."""
    playback_fps: float | None = None
    """A rate the session pinned its playback to; None follows the engine (`playback`)."""


@dataclass(frozen=True)
class Conditions:
    """What one chunk is made with."""

    prompt: str
    blend_chunks: int = 1
    image: Any = None
    """The anchor image (uint8 H×W×3), or None for no anchor."""
    image_version: int = 0
    """Changes with every new image, so a new one is applied even if it looks the same."""
    hard_cut: bool = False
    """A new image restarts the stream's history on it (image strength 1.0)."""
    sr_scale: int = 1
    seed: int = -1
    """Read when a stream is first opened; -1 draws one."""

    @property
    def image_key(self) -> tuple[int, bool]:
        return (self.image_version, self.image is not None)


@dataclass(frozen=True)
class Boundary:
    """The stream between two chunks: its state and the conditions it was left in."""

    state: bytes
    prompt: str
    image_key: tuple[int, bool]


@dataclass(frozen=True)
class Made:
    frames: Frames
    engine_s: float
    """Seconds from asking the engine for the chunk to having it (upscale included)."""
    steps: int
    reopen_s: float | None
    """Seconds spent reopening the stream at a boundary first, when it was."""
    scale: int = 1
    """SR left to the playout's consumer (`frames` are at model size)."""
    asked_at: float = 0.0
    """`time.perf_counter()` when the engine was asked for the chunk (the stream ready)."""


class StreamDriver:
    def __init__(
        self,
        engine: Engine,
        options: StreamOptions,
        upscale: Upscaler,
        defer_resampling: bool = False,
    ) -> None:
        self._engine = engine
        self._options = options
        self._upscale = upscale
        # Plain resampling (not an SR network) is left to an egress that does it per frame,
        # fused with its colour conversion, far cheaper (track.py).
        self._defer = defer_resampling and bool(getattr(upscale, "deferrable", False))
        self._stream: Stream | None = None
        self._prompt = ""
        self._image_key: tuple[int, bool] = (0, False)
        self._boundaries: dict[int, Boundary] = {}
        self._position: int | None = 0
        """The chunk the open stream makes next, None when a cancelled chunk left it unusable."""
        self._rewind_to: int | None = None
        self._rewound_to: int | None = None
        """The lowest boundary rewound to while the chunk in hand is made."""
        self.seed: int | None = None
        """The seed the open stream really uses (a -1 request resolved)."""

    async def make_chunk(
        self,
        index: int,
        conditions: Conditions,
        should_cancel: CancelCheck,
        on_frames: FramesCallback | None = None,
    ) -> Made:
        """Chunk `index` under `conditions` (upscaled when SR is on); `StreamCancelledError`
        once `should_cancel()` holds, at the engine's next step or decoded group. `on_frames`
        gets its frames as they are decoded, or all at once after an upscale in this loop."""
        start = time.perf_counter()
        self._rewound_to = None
        stream, reopened = await self._prepare(conditions)
        ready = time.perf_counter()
        steps = stream.steps_in_chunk(index)
        self._position = None  # until the chunk is done: a cancel leaves the stream mid-chunk
        upscale = conditions.sr_scale > 1 and not self._defer
        result = await stream.next_chunk(
            should_cancel=should_cancel,
            checkpoint=True,
            on_frames=None if upscale else on_frames,
        )
        self._position = index + 1
        floor = self._rewound_to
        if result.checkpoint is not None and (floor is None or floor > index):  # still wanted
            self._boundaries[index + 1] = Boundary(result.checkpoint, self._prompt, self._image_key)
        frames = result.frames
        if upscale:
            frames = await asyncio.to_thread(self._upscale, frames, conditions.sr_scale)
            if on_frames is not None:
                on_frames(DecodedFrames(index, 0, frames))
        end = time.perf_counter()
        return Made(
            frames, end - ready, steps, ready - start if reopened else None,
            self.deferred_scale(conditions), ready,
        )  # fmt: skip

    def deferred_scale(self, conditions: Conditions) -> int:
        """The SR scale left to the playout's consumer for a chunk made under `conditions`."""
        return conditions.sr_scale if conditions.sr_scale > 1 and self._defer else 1

    @property
    def will_reopen(self) -> bool:
        """The next chunk made first reopens the stream at a kept boundary."""
        return self._rewind_to is not None and self._position != self._rewind_to

    def rewind(self, boundary: int) -> None:
        """Make chunk `boundary` next, from the state kept there (boundary 0: a fresh stream).
        A chunk being made before `boundary` goes on: its boundary is kept when it ends."""
        self._rewind_to = boundary
        if self._rewound_to is None or boundary < self._rewound_to:
            self._rewound_to = boundary
        self._boundaries = {i: b for i, b in self._boundaries.items() if i <= boundary}

    def forget_before(self, boundary: int) -> None:
        """Boundaries before `boundary` are on screen: nothing will go back to them."""
        self._boundaries = {i: b for i, b in self._boundaries.items() if i >= boundary}

    @property
    def kept_boundaries(self) -> list[int]:
        return sorted(self._boundaries)

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        self.seed = None
        self._boundaries, self._position, self._rewind_to = {}, 0, None
        if stream is not None:
            await stream.close()

    async def _prepare(self, c: Conditions) -> tuple[Stream, bool]:
        reopened = False
        target, self._rewind_to = self._rewind_to, None
        if target is not None and self._position != target:
            await self._reopen(target, c)
            reopened = True
        if self._stream is None:
            await self._open(c)
            return self._require_stream(), reopened
        stream = self._require_stream()
        if c.prompt != self._prompt:
            await stream.set_prompt(c.prompt, c.blend_chunks)
            self._prompt = c.prompt
        if c.image_key != self._image_key:
            if c.image is not None:
                fresh = self._image_key[0] != c.image_version
                await stream.set_image(c.image, restart=fresh and c.hard_cut)
            else:
                await stream.clear_image()
            self._image_key = c.image_key
        return stream, reopened

    def _require_stream(self) -> Stream:
        if self._stream is None:
            raise RuntimeError("no open stream")
        return self._stream

    async def _open(self, c: Conditions, resume: Boundary | None = None) -> None:
        if self.seed is None:
            self.seed = c.seed if c.seed >= 0 else draw_seed()
        request = StreamRequest(
            prompt=c.prompt if resume is None else resume.prompt,
            width=self._options.width,
            height=self._options.height,
            seed=self.seed,
            settings=self._options.settings,
            image=c.image if resume is None else None,
        )
        saved = None if resume is None else resume.state
        self._stream = await self._engine.open_stream(request, Priority.SESSION, resume=saved)
        self._prompt = request.prompt
        self._image_key = c.image_key if resume is None else resume.image_key
        self._position = self._stream.chunk_index

    async def _reopen(self, boundary: int, c: Conditions) -> None:
        """Replace the stream by one at `boundary` (its kept state, or a fresh one for 0)."""
        old, self._stream = self._stream, None
        if old is not None:
            await old.close()
        if boundary == 0:
            return  # `_prepare` opens a fresh stream with the same seed
        kept = self._boundaries.get(boundary)
        if kept is None:
            raise RuntimeError(f"no stream state kept at boundary {boundary}")
        await self._open(c, kept)
