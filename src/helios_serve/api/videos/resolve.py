"""A validated request + the served model → every generation setting, defaults filled in.

A bare `{"prompt": ...}` gets the served variant's recommended settings (`PRESETS`): Base 50
steps at guidance 5.0; Mid pyramid [20, 20, 20] with CFG-Zero*; Distilled guidance 1.0, pyramid
[2, 2, 2], first chunk amplified. Defaults for the rest:

- size: the model's default (640x384 for the real checkpoints);
- fps: 24;
- num_frames: `seconds * fps` when `seconds` is given, else 99 (vLLM-Omni's client default:
  3 chunks; OpenAI's default of 4 s at 24 fps is 96 frames, the same 3 chunks);
- seed: random in 0..2**32-1, reported back so the video can be reproduced.

Generation runs whole 33-frame chunks, trimmed to 4k+1 frames: `delivered_frames` is what the
video really has (99 asked → 97 delivered).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from helios_serve.api.videos.fields import DEFAULT_FPS, VideoCreateRequest
from helios_serve.api.videos.reference import ReferenceMedia
from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.spec import ModelInfo, chunks_for, delivered_frames
from helios_serve.core.types import Mode, Variant

DEFAULT_NUM_FRAMES = 99


def random_seed() -> int:
    return secrets.randbelow(2**32)


@dataclass(frozen=True)
class ResolvedParams:
    """Everything a job needs to run, with the real (not the requested) output shape."""

    prompt: str
    width: int
    height: int
    num_frames: int
    """Frames asked for (given, or from seconds x fps, or the default)."""
    delivered_frames: int
    """Frames the video will really have: whole chunks trimmed to 4k+1."""
    chunks: int
    fps: int
    seed: int
    settings: SamplingSettings
    mode: Mode
    reference: ReferenceMedia | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def duration_s(self) -> float:
        return self.delivered_frames / self.fps


def preset_for(model: ModelInfo) -> SamplingSettings:
    """The served variant's preset, its pyramid fitted to the checkpoint's stage count."""
    preset = PRESETS[model.variant]
    pyramid = preset.pyramid_steps
    if model.variant is not Variant.BASE and len(pyramid) != model.pyramid_stages:
        pyramid = (pyramid[0],) * max(1, model.pyramid_stages)
    return preset.with_overrides(pyramid_steps=pyramid)


def _settings(req: VideoCreateRequest, model: ModelInfo) -> SamplingSettings:
    preset = preset_for(model)
    extra = req.extra
    pyramid = preset.pyramid_steps
    if extra.pyramid_num_inference_steps_list is not None:
        pyramid = tuple(extra.pyramid_num_inference_steps_list)

    def pick(value: object, default: object) -> object:
        return default if value is None else value

    return preset.with_overrides(
        guidance_scale=pick(req.guidance_scale, preset.guidance_scale),
        num_inference_steps=pick(req.num_inference_steps, preset.num_inference_steps),
        pyramid_steps=pyramid,
        use_cfg_zero_star=pick(extra.use_cfg_zero_star, preset.use_cfg_zero_star),
        use_zero_init=pick(extra.use_zero_init, preset.use_zero_init),
        zero_steps=pick(extra.zero_steps, preset.zero_steps),
        amplify_first_chunk=pick(extra.is_amplify_first_chunk, preset.amplify_first_chunk),
        negative_prompt=pick(req.negative_prompt, preset.negative_prompt),
        max_sequence_length=pick(extra.max_sequence_length, model.default_max_sequence_length),
        image_noise_sigma=(
            pick(extra.image_noise_sigma_min, preset.image_noise_sigma[0]),
            pick(extra.image_noise_sigma_max, preset.image_noise_sigma[1]),
        ),
        video_noise_sigma=(
            pick(extra.video_noise_sigma_min, preset.video_noise_sigma[0]),
            pick(extra.video_noise_sigma_max, preset.video_noise_sigma[1]),
        ),
    )


def resolve_spec_fields(
    req: VideoCreateRequest, model: ModelInfo, *, seed_source: Callable[[], int] = random_seed
) -> ResolvedParams:
    """Overlay the request on the served variant's preset and the model's defaults."""
    fps = req.fps or DEFAULT_FPS
    if req.num_frames is not None:
        num_frames = req.num_frames
    elif req.seconds is not None:
        num_frames = req.seconds * fps
    else:
        num_frames = DEFAULT_NUM_FRAMES
    ref = req.reference
    mode = Mode.T2V if ref is None else Mode.I2V if ref.kind == "image" else Mode.V2V
    return ResolvedParams(
        prompt=req.prompt,
        width=req.width or model.default_width,
        height=req.height or model.default_height,
        num_frames=num_frames,
        delivered_frames=delivered_frames(num_frames),
        chunks=chunks_for(num_frames),
        fps=fps,
        seed=seed_source() if req.seed is None else req.seed,
        settings=_settings(req, model),
        mode=mode,
        reference=ref,
    )
