"""What a caller asks of the engine: a stream's fixed settings, plain and serialisable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from helios_serve.core.settings import SamplingSettings
from helios_serve.core.step_cache import StepCacheSettings
from helios_serve.core.types import FRAMES_PER_CHUNK, Mode, Variant


@dataclass(frozen=True)
class StreamRequest:
    """Everything that fixes a stream at its start.

    `image` is a uint8 (H, W, 3) array or a PIL image (I2V); `video` a uint8 (T, H, W, 3) array
    or a list of PIL images (V2V; a clip under 33 frames is padded with its first frame).
    """

    prompt: str
    height: int = 384
    width: int = 640
    seed: int = 0
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    image: Any = None
    video: Any = None

    @property
    def mode(self) -> Mode:
        if self.video is not None:
            return Mode.V2V
        return Mode.I2V if self.image is not None else Mode.T2V


@dataclass(frozen=True)
class ModelInfo:
    """What layers above the engine may know about the served model."""

    name: str
    variant: Variant
    is_tiny: bool
    device: str
    default_width: int
    default_height: int
    default_max_sequence_length: int
    pyramid_stages: int
    aliases: tuple[str, ...] = ()
    step_cache_available: bool = False
    """Step caching can run here (cache-dit is installed; Base or Mid)."""
    step_cache_default: StepCacheSettings | None = None
    """What requests that do not say get (the server's --step-cache); None: off."""

    def __post_init__(self) -> None:
        # a description read back from JSON (the cluster's worker registry) holds a dict
        default: Any = self.step_cache_default
        if isinstance(default, dict):
            object.__setattr__(self, "step_cache_default", StepCacheSettings.from_json(default))

    def answers_to(self, name: str) -> bool:
        return name == self.name or name in self.aliases

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this: the VAE's 8x, the 2x2 patches, and one
        halving per extra pyramid stage (16 for Base, 64 for the 3-stage pyramid)."""
        return int(8 * 2 ** max(1, self.pyramid_stages))


def chunks_for(num_frames: int) -> int:
    """Whole 33-frame chunks needed for `num_frames` (at least one)."""
    return max(1, math.ceil(num_frames / FRAMES_PER_CHUNK))


def delivered_frames(num_frames: int) -> int:
    """Frames a video asked for `num_frames` has: exactly those (whole chunks are made and the
    last one is cut), never fewer than one."""
    return max(1, num_frames)


def settings_to_json(settings: SamplingSettings) -> dict[str, Any]:
    """JSON-safe settings; `step_cache` only when on (what was saved before it existed, jobs
    and stream states, reads back equal)."""
    data = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in asdict(settings).items()
        if k != "step_cache"
    }
    if settings.step_cache is not None:
        data["step_cache"] = settings.step_cache.to_json()
    return data


def settings_from_json(data: dict[str, Any]) -> SamplingSettings:
    known = SamplingSettings.__dataclass_fields__
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
    }
    if values.get("step_cache") is not None:
        values["step_cache"] = StepCacheSettings.from_json(values["step_cache"])
    return SamplingSettings(**values)
