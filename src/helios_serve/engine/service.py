"""LocalEngine: the `Engine` protocol over a loaded checkpoint and one worker thread."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from helios_serve.core.protocols import CancelCheck, FramesCallback, Priority, ProgressCallback
from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.core.types import ChunkResult, DecodedFrames, Variant
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.state import StreamState
from helios_serve.engine.step_cache import step_cache_available
from helios_serve.engine.streamer import ChunkStreamer, decode_groups_for
from helios_serve.engine.worker import EngineWorker

logger = logging.getLogger(__name__)


def describe(model: LoadedModel, served_name: str, aliases: tuple[str, ...] = ()) -> ModelInfo:
    """The `ModelInfo` that upper layers see for a loaded checkpoint."""
    width, height = model.default_size
    stages = 1 if model.variant is Variant.BASE else int(model.pipe.scheduler.config.stages)
    can_cache = model.variant is not Variant.DISTILLED and step_cache_available()
    return ModelInfo(
        name=served_name,
        variant=model.variant,
        is_tiny=model.is_tiny,
        device=str(model.device),
        default_width=width,
        default_height=height,
        default_max_sequence_length=model.default_max_sequence_length,
        pyramid_stages=stages,
        aliases=aliases,
        step_cache_available=can_cache,
        step_cache_default=model.step_cache_default if can_cache else None,
    )


def release_device_memory(_: BaseException | None = None) -> None:
    """After a failed item (e.g. out of memory) give cached blocks back so the next job fits."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class LocalStream:
    """A `Stream` whose every operation runs on the engine worker at a fixed priority."""

    def __init__(self, worker: EngineWorker, streamer: ChunkStreamer, priority: Priority) -> None:
        self._worker = worker
        self._streamer = streamer
        self._priority = priority

    @property
    def chunk_index(self) -> int:
        return self._streamer.chunk_index

    def steps_in_chunk(self, index: int) -> int:
        return self._streamer.steps_in_chunk(index)

    async def next_chunk(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        *,
        prefetch: bool = False,
        checkpoint: bool = False,
        on_frames: FramesCallback | None = None,
    ) -> ChunkResult:
        hand_over = None
        if on_frames is not None:  # made on the worker thread, taken on the caller's loop
            loop = asyncio.get_running_loop()

            def hand_over(frames: DecodedFrames) -> None:
                loop.call_soon_threadsafe(on_frames, frames)

        return await self._worker.run(
            lambda: self._streamer.next_chunk(
                on_progress,
                should_cancel,
                prefetch=prefetch,
                checkpoint=checkpoint,
                on_frames=hand_over,
            ),
            self._priority,
        )

    async def set_prompt(self, prompt: str, blend_chunks: int = 1) -> None:
        await self._worker.run(
            lambda: self._streamer.set_prompt(prompt, blend_chunks), self._priority
        )

    async def set_image(self, image: Any, restart: bool = False) -> None:
        await self._worker.run(
            lambda: self._streamer.set_image(image, restart=restart), self._priority
        )

    async def clear_image(self) -> None:
        await self._worker.run(self._streamer.clear_image, self._priority)

    async def set_seed(self, seed: int) -> None:
        await self._worker.run(lambda: self._streamer.set_seed(seed), self._priority)

    async def close(self) -> None:
        """Nothing to free explicitly: dropping the streamer drops its tensors."""


class LocalEngine:
    """Serves one loaded checkpoint through one worker thread."""

    def __init__(self, model: LoadedModel, info: ModelInfo) -> None:
        self._model = model
        self._info = info
        self._worker = EngineWorker(on_error=release_device_memory)

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def open_stream(
        self, request: StreamRequest, priority: Priority, resume: bytes | None = None
    ) -> LocalStream:
        def open_() -> ChunkStreamer:
            state = None if resume is None else StreamState.from_bytes(resume)
            streamer: ChunkStreamer = ChunkStreamer(
                self._model, request, state=state, decode_groups=decode_groups_for(priority)
            )
            return streamer

        streamer = await self._worker.run(open_, priority)
        return LocalStream(self._worker, streamer, priority)

    def is_healthy(self) -> bool:
        return self._worker.is_alive()

    async def close(self) -> None:
        """Let the step in progress finish, then stop the worker (off the event loop)."""
        await asyncio.to_thread(self._worker.stop)
        if self._worker.is_alive():
            logger.warning("the engine thread did not stop in time; its work is abandoned")

    @property
    def abandoned_work(self) -> bool:
        """True after `close` when native work is still running on the worker thread: the
        process must then end without interpreter finalization (which would abort in it)."""
        return self._worker.is_alive()
