"""Sampling settings per variant: the recommended defaults of each published checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from helios_serve.core.step_cache import StepCacheSettings
from helios_serve.core.types import Variant

GuidanceMode = Literal["sequential", "batched", "parallel"]
"""How the engine runs the two guidance passes (`engine.guidance`): a server's choice."""
GUIDANCE_MODES: tuple[GuidanceMode, ...] = ("sequential", "batched")
"""The modes a flag chooses; "parallel" (a pass per CFG branch of ranks, `engine.parallel`'s
`ParallelPasses`) comes with a `--parallel cfg=2` layout."""


@dataclass(frozen=True)
class SamplingSettings:
    """How each chunk is denoised. Defaults equal diffusers' `__call__` defaults."""

    guidance_scale: float = 5.0
    num_inference_steps: int = 50
    """Single-stage (Base) steps per chunk."""
    pyramid_steps: tuple[int, ...] = (10, 10, 10)
    """Steps per pyramid stage (Mid, Distilled)."""
    use_cfg_zero_star: bool = False
    use_zero_init: bool = True
    zero_steps: int = 1
    amplify_first_chunk: bool = False
    negative_prompt: str = ""
    max_sequence_length: int = 512
    image_noise_sigma: tuple[float, float] = (0.111, 0.135)
    video_noise_sigma: tuple[float, float] = (0.111, 0.135)
    step_cache: StepCacheSettings | None = None
    """Step caching (cache-dit DBCache) for Base and Mid; None: every step runs in full."""

    @property
    def uses_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    def with_overrides(self, **changes: object) -> SamplingSettings:
        return replace(self, **changes)  # type: ignore[arg-type]


PRESETS: dict[Variant, SamplingSettings] = {
    Variant.BASE: SamplingSettings(guidance_scale=5.0, num_inference_steps=50),
    Variant.MID: SamplingSettings(
        guidance_scale=5.0, pyramid_steps=(20, 20, 20), use_cfg_zero_star=True
    ),
    Variant.DISTILLED: SamplingSettings(
        guidance_scale=1.0, pyramid_steps=(2, 2, 2), amplify_first_chunk=True
    ),
}
"""What a bare request gets on each variant (Helios' official scripts)."""


def steps_in_chunk(variant: Variant, settings: SamplingSettings, index: int) -> int:
    """Denoising steps of chunk `index`: Distilled doubles its first chunk when amplifying."""
    if variant is Variant.BASE:
        return settings.num_inference_steps
    total = sum(settings.pyramid_steps)
    amplified = index == 0 and settings.amplify_first_chunk and variant is Variant.DISTILLED
    return total * 2 if amplified else total
