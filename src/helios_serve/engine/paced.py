"""PacedEngine: a TEST engine that takes a fixed time per chunk and paints what it made.

It stands in for a GPU so that real-time behaviour (scheduling, steering latency, stalls) can be
measured and tested on any machine: `helios serve --engine paced:1.1` makes every chunk take
1.1 s (the 30 FPS goal on an H100), `paced:1.7` the paper's 19.5 FPS. No model is loaded.
Each frame carries a `FrameCode` (chunk index, frame index, prompt tag) in big blocks at its
top, over a moving gradient whose colour follows the prompt and seed, so a client can see from
pixels which chunk and prompt it is looking at.

A chunk's time is spent like a distilled Helios chunk on a GPU (h200-14b profile: transformer
0.94 s, VAE decode 0.48 s): `steps` denoising steps share what the decode leaves, with a
cancellation check before each one, and the decode takes its share (`paced:1.1,decode=0.45`;
35 % by default). Asked for progressive delivery (`on_frames`), the decode hands its frames over
latent frame by latent frame as a VAE makes them (1, then 4 at a time; equal time each) and
may be abandoned between them; otherwise the chunk comes whole at its end. Opening a stream (also
from a checkpoint) costs `open_s`, a guess for the real engine's prompt encoding and set-up
that has not been measured on a GPU. One chunk runs at a time (one lock, like the single
worker; it does not order waiters by priority). Checkpoints are small JSON documents.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from helios_serve.core import framecode
from helios_serve.core.protocols import CancelCheck, FramesCallback, Priority, ProgressCallback
from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.core.types import (
    FRAME_GROUPS,
    FRAMES_PER_CHUNK,
    ChunkResult,
    ChunkTimings,
    DecodedFrames,
    StepProgress,
    Variant,
)
from helios_serve.errors import HeliosError, InvalidInputError, StreamCancelledError

ENGINE_PREFIX = "paced:"
STATE_FORMAT = "helios-paced-state"
DECODE_SHARE = 0.35
"""Of a chunk's time, the part spent in the VAE decode by default (the rest: denoising steps)."""


class PacedStateError(HeliosError):
    """A checkpoint that is not the paced engine's, or was made at another size."""

    code = "checkpoint_mismatch"


@dataclass(frozen=True)
class PacedTiming:
    chunk_s: float
    """Seconds per chunk, open excluded."""
    steps: int = 3
    open_s: float = 0.05
    decode_share: float = DECODE_SHARE
    """Of `chunk_s`, the part the VAE decode takes (after the steps)."""

    @property
    def step_s(self) -> float:
        return self.chunk_s * (1 - self.decode_share) / self.steps

    @property
    def decode_s(self) -> float:
        return self.chunk_s * self.decode_share


SPEC_HELP = "paced:SECONDS[,decode=SHARE] with 0 < SECONDS <= 600 and 0 < SHARE < 1"


def parse_engine_spec(spec: str) -> PacedTiming:
    """`paced:SECONDS[,decode=SHARE]` → its timing; `InvalidInputError` for anything else."""
    if not spec.startswith(ENGINE_PREFIX):
        raise InvalidInputError(f"unknown engine {spec[:40]!r}: use {SPEC_HELP}", param="engine")
    head, *options = spec[len(ENGINE_PREFIX) :].split(",")
    seconds = _number(head)
    if not 0 < seconds <= 600:
        raise InvalidInputError(f"bad engine {spec[:40]!r}: use {SPEC_HELP}", param="engine")
    share = DECODE_SHARE
    for option in options:
        name, _, value = option.partition("=")
        share = _number(value) if name.strip() == "decode" else math.nan
        if not 0 < share < 1:
            raise InvalidInputError(f"bad engine {spec[:40]!r}: use {SPEC_HELP}", param="engine")
    return PacedTiming(seconds, decode_share=share)


def _number(text: str) -> float:
    """A finite float, or NaN (which fails every range check)."""
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def paced_info(name: str = "paced") -> ModelInfo:
    return ModelInfo(
        name=name,
        variant=Variant.DISTILLED,
        is_tiny=True,
        device="cpu",
        default_width=192,
        default_height=128,
        default_max_sequence_length=16,
        pyramid_stages=3,
    )


class PacedStream:
    def __init__(
        self,
        request: StreamRequest,
        timing: Callable[[], PacedTiming],
        lock: asyncio.Lock,
        state: bytes | None,
    ) -> None:
        """`timing()`: the engine's timing now (read at every chunk: a test may change it)."""
        if framecode.cell_size(request.width, request.height) == 0:
            raise InvalidInputError(
                f"{request.width}x{request.height} is too small for the paced engine's frame code",
                param="size",
            )
        self._request = request
        self._timing = timing
        self._lock = lock
        self._index = 0
        self._prompt = request.prompt
        self._seed = request.seed
        self._image: Any = request.image
        if state is not None:
            self._restore(state)

    def _restore(self, data: bytes) -> None:
        try:
            saved = json.loads(data)
            if saved.get("format") != STATE_FORMAT:
                raise ValueError("not a paced engine state")
            size = (int(saved["width"]), int(saved["height"]))
            index, prompt, seed = int(saved["index"]), str(saved["prompt"]), int(saved["seed"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PacedStateError(f"unreadable paced engine state: {exc}") from None
        if size != (self._request.width, self._request.height):
            raise PacedStateError(f"the saved state is {size[0]}x{size[1]}")
        self._index, self._prompt, self._seed = index, prompt, seed

    @property
    def chunk_index(self) -> int:
        return self._index

    def steps_in_chunk(self, index: int) -> int:
        return self._timing().steps

    async def next_chunk(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        *,
        prefetch: bool = False,  # a hint; nothing to overlap here
        checkpoint: bool = False,
        on_frames: FramesCallback | None = None,
    ) -> ChunkResult:
        async with self._lock:
            start = time.perf_counter()
            steps = self._timing().steps
            for step in range(1, steps + 1):
                if should_cancel is not None and should_cancel():
                    raise StreamCancelledError(f"cancelled during chunk {self._index}")
                await _sleep_until(start + step * self._timing().step_s)
                if on_progress is not None:
                    on_progress(StepProgress(self._index, step, steps, 0))
            denoised = time.perf_counter()
            frames = self._frames()
            if on_frames is None:
                await _sleep_until(start + self._timing().chunk_s)
            else:
                await self._deliver(frames, denoised, on_frames, should_cancel)
            index, self._index = self._index, self._index + 1
            end = time.perf_counter()
            return ChunkResult(
                index,
                frames,
                ChunkTimings(denoised - start, end - denoised, end - start),
                self._prompt,
                self._seed,
                checkpoint=self._state() if checkpoint else None,
            )

    async def _deliver(
        self,
        frames: npt.NDArray[np.uint8],
        denoised: float,
        on_frames: FramesCallback,
        should_cancel: CancelCheck | None,
    ) -> None:
        """The decode as a VAE does it, latent frame by latent frame, each group handed over
        when it is done; abandoned between groups once `should_cancel()` holds."""
        per_group = self._timing().decode_s / len(FRAME_GROUPS)
        at = 0
        for group, count in enumerate(FRAME_GROUPS):
            if group and should_cancel is not None and should_cancel():
                raise StreamCancelledError(f"cancelled in the decode of chunk {self._index}")
            await _sleep_until(denoised + (group + 1) * per_group)
            on_frames(DecodedFrames(self._index, at, frames[at : at + count]))
            at += count

    def _state(self) -> bytes:
        saved = {
            "format": STATE_FORMAT,
            "index": self._index,
            "prompt": self._prompt,
            "seed": self._seed,
            "width": self._request.width,
            "height": self._request.height,
        }
        return json.dumps(saved).encode()

    def _frames(self) -> npt.NDArray[np.uint8]:
        h, w = self._request.height, self._request.width
        hue = zlib.crc32(f"{self._prompt}|{self._seed}".encode())
        colour = np.array([hue & 0xFF, (hue >> 8) & 0xFF, (hue >> 16) & 0xFF], dtype=np.float32)
        x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
        frames = np.empty((FRAMES_PER_CHUNK, h, w, 3), dtype=np.uint8)
        tag = framecode.prompt_tag(self._prompt)
        for i in range(FRAMES_PER_CHUNK):
            t = (self._index * FRAMES_PER_CHUNK + i) / 48.0
            wave = 0.5 + 0.5 * np.sin(2 * np.pi * (x + t))  # a band sweeping sideways
            frames[i] = np.broadcast_to(40 + wave * colour * 0.7, (h, w, 3)).astype(np.uint8)
            framecode.paint(frames[i], framecode.FrameCode(self._index, i, tag))
        return frames

    async def set_prompt(self, prompt: str, blend_chunks: int = 1) -> None:
        self._prompt = prompt  # a fade is not drawn: the frames show the prompt switched to

    async def set_image(self, image: Any, restart: bool = False) -> None:
        self._image = image

    async def clear_image(self) -> None:
        self._image = None

    async def set_seed(self, seed: int) -> None:
        self._seed = seed

    async def close(self) -> None:
        return None


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.perf_counter()))


class PacedEngine:
    """The `Engine` protocol with `PacedStream`s; for measurements and tests only. `timing`
    may be replaced while streams run (an engine that slows down and speeds up)."""

    def __init__(self, timing: PacedTiming, info: ModelInfo | None = None) -> None:
        self.timing = timing
        self._info = info or paced_info()
        self._lock = asyncio.Lock()
        self.opened = 0

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def open_stream(
        self, request: StreamRequest, priority: Priority, resume: bytes | None = None
    ) -> PacedStream:
        async with self._lock:
            await asyncio.sleep(self.timing.open_s)
            stream = PacedStream(request, lambda: self.timing, self._lock, resume)
        self.opened += 1
        return stream

    def is_healthy(self) -> bool:
        return True

    async def close(self) -> None:
        return None
