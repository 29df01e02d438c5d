"""The seams: what the job runner and real-time sessions need from an engine, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any, Protocol

from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.core.types import ChunkResult, DecodedFrames, Frames, StepProgress

ProgressCallback = Callable[[StepProgress], None]
CancelCheck = Callable[[], bool]
FramesCallback = Callable[[DecodedFrames], None]


class Upscaler(Protocol):
    """Session super-resolution: frames (T, H, W, 3) → (T, H*scale, W*scale, 3), uint8."""

    def __call__(self, frames: Frames, scale: int) -> Frames: ...


class Priority(IntEnum):
    """Lower runs first: a live session's next chunk goes before a queued job's."""

    SESSION = 0
    JOB = 1


class Stream(Protocol):
    """One open video stream; each call runs on the engine's single worker."""

    @property
    def chunk_index(self) -> int: ...

    def steps_in_chunk(self, index: int) -> int: ...

    async def next_chunk(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        *,
        prefetch: bool = False,
        checkpoint: bool = False,
        on_frames: FramesCallback | None = None,
    ) -> ChunkResult:
        """The next chunk. `prefetch` is a hint that the caller will ask for the one after it
        with unchanged conditioning: an engine may start that chunk while this one decodes.
        `checkpoint` asks for the stream's state after this chunk in `ChunkResult.checkpoint`
        (opaque bytes for `Engine.open_stream(resume=...)`).

        `on_frames` asks for progressive delivery: it gets the chunk's frames group by group
        as the decode makes them (in order from frame 0, all of them, called on the caller's
        event loop, every call before this one returns; the result still holds every frame).
        The decode may then also be abandoned between groups when `should_cancel()` holds."""
        ...

    async def set_prompt(self, prompt: str, blend_chunks: int = 1) -> None: ...

    async def set_image(self, image: Any, restart: bool = False) -> None: ...

    async def clear_image(self) -> None: ...

    async def set_seed(self, seed: int) -> None: ...

    async def close(self) -> None: ...


class Engine(Protocol):
    """Owns the model and the one worker that runs it."""

    @property
    def info(self) -> ModelInfo: ...

    async def open_stream(
        self, request: StreamRequest, priority: Priority, resume: bytes | None = None
    ) -> Stream:
        """A new stream, or with `resume` the stream a checkpoint was taken from, continuing
        after its chunk (the request's size and settings must match it)."""
        ...

    def is_healthy(self) -> bool: ...

    async def close(self) -> None: ...
