"""FakeEngine: the `Engine` protocol with cheap numpy frames and injectable faults.

For fast tests of the layers above the engine seam (jobs, API, sessions). Every user-visible
feature also has an end-to-end test on the real tiny pipeline; this is never the only proof.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from helios_serve.core.protocols import CancelCheck, FramesCallback, Priority, ProgressCallback
from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.core.types import (
    FRAMES_PER_CHUNK,
    ChunkResult,
    ChunkTimings,
    DecodedFrames,
    StepProgress,
    Variant,
)
from helios_serve.errors import EngineRestartedError, StreamCancelledError

FAIL_MARKER = "[fail]"
"""A prompt containing this makes the fake raise `FakeEngineError` at chunk 1."""
OOM_MARKER = "[oom]"
"""A prompt containing this makes the fake raise an out-of-memory error at chunk 1."""
RESTART_MARKER = "[engine-restart]"
"""A prompt containing this makes the fake fail chunk 1 as a restarted engine process does."""


class FakeEngineError(RuntimeError):
    """An injected failure."""


class FakeOutOfMemoryError(RuntimeError):
    """Shaped like torch.cuda.OutOfMemoryError for fault-isolation tests."""


@dataclass
class FakeEngineConfig:
    steps_per_chunk: int = 3
    step_delay_s: float = 0.0
    info: ModelInfo = field(
        default_factory=lambda: ModelInfo(
            name="fake",
            variant=Variant.DISTILLED,
            is_tiny=True,
            device="cpu",
            default_width=64,
            default_height=64,
            default_max_sequence_length=16,
            pyramid_stages=3,
        )
    )


class FakeStream:
    def __init__(
        self,
        request: StreamRequest,
        config: FakeEngineConfig,
        lock: asyncio.Lock,
        resume: bytes | None = None,
    ):
        self._request = request
        self._config = config
        self._lock = lock
        self._prompt = request.prompt
        self._seed = request.seed
        self._index = 0
        self.image: Any = request.image
        if resume is not None:  # the fake's whole state: where it is and what it draws
            saved = json.loads(resume)
            self._index, self._prompt, self._seed = saved["index"], saved["prompt"], saved["seed"]

    @property
    def chunk_index(self) -> int:
        return self._index

    def steps_in_chunk(self, index: int) -> int:
        return self._config.steps_per_chunk

    async def next_chunk(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        *,
        prefetch: bool = False,  # a hint; the fake engine has nothing to overlap
        checkpoint: bool = False,
        on_frames: FramesCallback | None = None,
    ) -> ChunkResult:
        async with self._lock:  # one chunk at a time, like the single worker
            start = time.perf_counter()
            steps = self._config.steps_per_chunk
            for step in range(1, steps + 1):
                if should_cancel is not None and should_cancel():
                    raise StreamCancelledError(f"cancelled during chunk {self._index}")
                await asyncio.sleep(self._config.step_delay_s)
                if on_progress is not None:
                    on_progress(StepProgress(self._index, step, steps, 0))
            if self._index == 1 and FAIL_MARKER in self._prompt:
                raise FakeEngineError("injected failure")
            if self._index == 1 and OOM_MARKER in self._prompt:
                raise FakeOutOfMemoryError("CUDA out of memory (injected)")
            if self._index == 1 and RESTART_MARKER in self._prompt:
                raise EngineRestartedError("the engine was restarted (injected)")
            frames = self._frames()
            if on_frames is not None:  # the whole chunk as one group
                on_frames(DecodedFrames(self._index, 0, frames))
            self._index += 1
            total = time.perf_counter() - start
            saved = None
            if checkpoint:
                state = {"index": self._index, "prompt": self._prompt, "seed": self._seed}
                saved = json.dumps(state).encode()
            return ChunkResult(
                self._index - 1,
                frames,
                ChunkTimings(total, 0.0, total),
                self._prompt,
                self._seed,
                checkpoint=saved,
            )

    def _frames(self) -> np.ndarray:
        h, w = self._request.height, self._request.width
        base = (zlib.crc32(f"{self._prompt}|{self._seed}".encode()) % 200) + self._index * 7
        ramp = np.arange(FRAMES_PER_CHUNK, dtype=np.int64)[:, None, None, None]
        frames = (base + ramp + np.zeros((1, h, w, 3), dtype=np.int64)) % 256
        return frames.astype(np.uint8)

    async def set_prompt(self, prompt: str, blend_chunks: int = 1) -> None:
        self._prompt = prompt

    async def set_image(self, image: Any, restart: bool = False) -> None:
        self.image = image

    async def clear_image(self) -> None:
        self.image = None

    async def set_seed(self, seed: int) -> None:
        self._seed = seed

    async def close(self) -> None:
        return None


class FakeEngine:
    """Deterministic, torch-free engine."""

    def __init__(self, config: FakeEngineConfig | None = None) -> None:
        self.config = config or FakeEngineConfig()
        self._lock = asyncio.Lock()
        self.opened: list[StreamRequest] = []
        self.healthy = True

    @property
    def info(self) -> ModelInfo:
        return self.config.info

    async def open_stream(
        self, request: StreamRequest, priority: Priority, resume: bytes | None = None
    ) -> FakeStream:
        self.opened.append(request)
        return FakeStream(request, self.config, self._lock, resume)

    def is_healthy(self) -> bool:
        return self.healthy

    async def close(self) -> None:
        self.healthy = False
