"""Plain value types that cross layer boundaries (numpy frames, no torch tensors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FRAMES_PER_CHUNK = 33
"""Video frames produced by one chunk: 9 latent frames through the 4x temporal VAE."""

LATENT_FRAMES_PER_CHUNK = 9
FRAME_GROUPS = (1,) + (4,) * (LATENT_FRAMES_PER_CHUNK - 1)
"""Video frames each latent frame of a chunk decodes to, in order: the causal VAE makes one
from the first and four from each other (1 + 8 x 4 = 33)."""

Frames = npt.NDArray[np.uint8]
"""Video frames, uint8 RGB shaped (T, H, W, 3) (one frame: (H, W, 3))."""


class Variant(StrEnum):
    """The three published Helios checkpoints, told apart by their configs."""

    BASE = "base"
    MID = "mid"
    DISTILLED = "distilled"


class Mode(StrEnum):
    """What conditions the stream: text only, a reference image, or a video prefix."""

    T2V = "t2v"
    I2V = "i2v"
    V2V = "v2v"


@dataclass(frozen=True)
class ChunkTimings:
    """Seconds spent on one chunk, measured with device synchronisation."""

    transformer_s: float
    decode_s: float
    total_s: float


@dataclass(frozen=True)
class ChunkResult:
    """One chunk of video: uint8 frames shaped (T, H, W, 3) plus how it was made."""

    index: int
    frames: npt.NDArray[np.uint8]
    timings: ChunkTimings
    prompt: str
    seed: int
    extras: dict[str, float] = field(default_factory=dict)
    checkpoint: bytes | None = None
    """The stream's state right after this chunk (opaque bytes), when one was asked for."""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class DecodedFrames:
    """Frames of a chunk handed over as the decode makes them (progressive delivery)."""

    chunk_index: int
    start: int
    """Where the first of `frames` sits in the chunk."""
    frames: npt.NDArray[np.uint8]
    """uint8 (n, H, W, 3)."""


@dataclass(frozen=True)
class StepProgress:
    """Reported after every denoising step; `fraction` is within the whole request."""

    chunk_index: int
    step: int
    steps_in_chunk: int
    stage: int
