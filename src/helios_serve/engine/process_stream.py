"""ProcessStream: a `Stream` whose operations run in the engine process, as typed messages."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from helios_serve.core.protocols import CancelCheck, FramesCallback, Priority, ProgressCallback
from helios_serve.core.settings import steps_in_chunk
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import ChunkResult, DecodedFrames
from helios_serve.engine.messages import (
    ClearImage,
    Close,
    NextChunk,
    SetImage,
    SetPrompt,
    SetSeed,
    StreamOperation,
)
from helios_serve.errors import EngineRestartedError, StreamCancelledError

if TYPE_CHECKING:
    from helios_serve.engine.process import ProcessEngine


class ProcessStream:
    """One stream opened in the engine process; dies with that process (`generation`)."""

    def __init__(
        self,
        engine: ProcessEngine,
        generation: int,
        stream_id: int,
        chunk_index: int,
        request: StreamRequest,
        priority: Priority,
    ) -> None:
        self._engine = engine
        self._generation = generation
        self._id = stream_id
        self._index = chunk_index
        self._settings = request.settings
        self._priority = priority

    @property
    def chunk_index(self) -> int:
        return self._index

    def steps_in_chunk(self, index: int) -> int:
        return steps_in_chunk(self._engine.info.variant, self._settings, index)

    async def _call(self, op: StreamOperation) -> Any:
        return await self._engine.call(op, self._priority, generation=self._generation)

    async def next_chunk(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        *,
        prefetch: bool = False,
        checkpoint: bool = False,
        on_frames: FramesCallback | None = None,
    ) -> ChunkResult:
        if should_cancel is not None and should_cancel():
            raise StreamCancelledError("cancelled before the chunk started")
        received: list[npt.NDArray[np.uint8]] = []

        def take(decoded: DecodedFrames) -> None:  # on the loop, before the result
            received.append(decoded.frames)
            if on_frames is not None:
                on_frames(decoded)

        progressive = on_frames is not None
        result: ChunkResult = await self._engine.call(
            NextChunk(self._id, prefetch, checkpoint, progressive),
            self._priority,
            generation=self._generation,
            on_progress=on_progress,
            should_cancel=should_cancel,
            on_frames=take if progressive else None,
        )
        self._index = result.index + 1
        if progressive:  # the frames crossed the pipe once, group by group
            result = replace(result, frames=np.concatenate(received))
        return result

    async def set_prompt(self, prompt: str, blend_chunks: int = 1) -> None:
        await self._call(SetPrompt(self._id, prompt, blend_chunks))

    async def set_image(self, image: Any, restart: bool = False) -> None:
        await self._call(SetImage(self._id, image, restart))

    async def clear_image(self) -> None:
        await self._call(ClearImage(self._id))

    async def set_seed(self, seed: int) -> None:
        await self._call(SetSeed(self._id, seed))

    async def close(self) -> None:
        with contextlib.suppress(EngineRestartedError):  # its process is gone already
            await self._call(Close(self._id))
