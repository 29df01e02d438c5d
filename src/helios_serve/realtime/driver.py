"""StreamDriver: keeps one engine stream in line with the session state, chunk by chunk.

Image strength is mapped plainly: 0 drops the anchor, anything above 0 anchors the stream on the
image from the next chunk (history kept, so the video drifts toward it), and exactly 1.0 makes a
new image a hard cut (the stream's history restarts on the image). Nothing finer is claimed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from helios_serve.core.protocols import Engine, Priority, Stream
from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import StreamRequest
from helios_serve.realtime import state_machine as sm

Frames = npt.NDArray[np.uint8]
Upscaler = Callable[[Frames, int], Frames]
"""`upscale(frames (T,H,W,3) uint8, scale) -> frames (T,H*scale,W*scale,3) uint8`."""


class FrameSink(Protocol):
    """Where finished chunks go; `put` waits while the buffer is full."""

    async def put(self, frames: Frames) -> None: ...

    def clear(self) -> None: ...


@dataclass(frozen=True)
class StreamOptions:
    """The fixed settings of the stream a session opens at `start`."""

    width: int
    height: int
    settings: SamplingSettings
    prompt_blend_chunks: int = 1


class StreamDriver:
    """Opens the stream at the first chunk and applies state changes at chunk boundaries."""

    def __init__(self, engine: Engine, options: StreamOptions, upscale: Upscaler) -> None:
        self._engine = engine
        self._options = options
        self._upscale = upscale
        self._stream: Stream | None = None
        self._applied_image: tuple[int, bool] = (0, False)
        self.seed: int | None = None
        """The seed the open stream really uses (a -1 request resolved)."""

    async def make_chunk(
        self,
        plan: sm.ChunkPlan,
        state: sm.SessionState,
        is_stale: Callable[[sm.ChunkPlan], bool],
    ) -> Frames:
        """Generate chunk `plan.index` (upscaled when SR is on); cancelled once stale."""
        stream = await self._prepare(plan, state)
        result = await stream.next_chunk(should_cancel=lambda: is_stale(plan))
        frames = result.frames
        if plan.sr_scale > 1:
            frames = await asyncio.to_thread(self._upscale, frames, plan.sr_scale)
        return frames

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        self.seed = None
        if stream is not None:
            await stream.close()

    async def _prepare(self, plan: sm.ChunkPlan, s: sm.SessionState) -> Stream:
        anchor = s.image.pixels if s.image is not None and s.image_strength > 0 else None
        if self._stream is None:
            self.seed = s.seed if s.seed >= 0 else random.randrange(2**31)
            request = StreamRequest(
                prompt=plan.prompt,
                width=self._options.width,
                height=self._options.height,
                seed=self.seed,
                settings=self._options.settings,
                image=anchor,
            )
            self._stream = await self._engine.open_stream(request, Priority.SESSION)
            self._applied_image = (s.image_version, anchor is not None)
            return self._stream
        if plan.prompt_changed:
            await self._stream.set_prompt(plan.prompt, self._options.prompt_blend_chunks)
        if self._applied_image != (s.image_version, anchor is not None):
            if anchor is not None:
                fresh = self._applied_image[0] != s.image_version
                hard_cut = fresh and s.image_strength >= 1.0
                await self._stream.set_image(anchor, restart=hard_cut)
            else:
                await self._stream.clear_image()
            self._applied_image = (s.image_version, anchor is not None)
        return self._stream
