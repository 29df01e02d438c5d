"""A validated request + the served model → every generation setting, defaults filled in.

A bare `{"prompt": ...}` gets the served variant's recommended settings (`PRESETS`): Base 50
steps at guidance 5.0; Mid pyramid [20, 20, 20] with CFG-Zero*; Distilled guidance 1.0, pyramid
[2, 2, 2], first chunk amplified. Defaults for the rest:

- size: the model's default (640x384 for the real checkpoints);
- fps: 24;
- num_frames: `seconds * fps` when `seconds` is given, else 99 (vLLM-Omni's client default:
  3 chunks; OpenAI's default of 4 s at 24 fps is 96 frames, the same 3 chunks);
- seed: random in 0..2**32-1, reported back so the video can be reproduced.

Generation runs whole 33-frame chunks and cuts the last one: a video has exactly the frames
asked (`delivered_frames`: 99 asked, 99 delivered; 2 s at 12 fps, 24).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from helios_serve.api.videos.fields import VideoCreateRequest
from helios_serve.api.videos.reference import ReferenceMedia
from helios_serve.core.requests import (
    DEFAULT_FPS,
    DEFAULT_NUM_FRAMES,
    RequestError,
    SamplingChoices,
    draw_seed,
    sampling_settings,
)
from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import ModelInfo, chunks_for, delivered_frames
from helios_serve.core.step_cache import StepCacheChoice, StepCacheError, step_cache_choice
from helios_serve.core.types import Mode
from helios_serve.web.errors import bad_request


@dataclass(frozen=True)
class ResolvedParams:
    """Everything a job needs to run, with the real (not the requested) output shape."""

    prompt: str
    width: int
    height: int
    num_frames: int
    """Frames asked for (given, or from seconds x fps, or the default)."""
    delivered_frames: int
    """Frames the video will really have: those asked (the last chunk is cut)."""
    chunks: int
    fps: int
    seed: int
    settings: SamplingSettings
    mode: Mode
    reference: ReferenceMedia | None = None
    requested_seconds: str | None = None
    output_size: tuple[int, int] | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def duration_s(self) -> float:
        return self.delivered_frames / self.fps


def preset_for(model: ModelInfo) -> SamplingSettings:
    """What a bare request gets: the served variant's preset, fitted to the checkpoint."""
    return sampling_settings(model, SamplingChoices())


EXTRA_PARAMS = frozenset(
    {
        "pyramid_num_inference_steps_list",
        "is_amplify_first_chunk",
        "use_cfg_zero_star",
        "step_cache",
    }
)
"""Vocabulary params that a create request sends inside `extra_params`."""


def choices_of(req: VideoCreateRequest) -> SamplingChoices:
    extra = req.extra

    def sigmas(kind: str) -> tuple[float, float] | None:
        low = getattr(extra, f"{kind}_noise_sigma_min")
        high = getattr(extra, f"{kind}_noise_sigma_max")
        if low is None and high is None:
            return None
        default = getattr(SamplingSettings(), f"{kind}_noise_sigma")
        return (default[0] if low is None else low, default[1] if high is None else high)

    steps = extra.pyramid_num_inference_steps_list
    return SamplingChoices(
        guidance_scale=req.guidance_scale,
        num_inference_steps=req.num_inference_steps,
        pyramid_steps=None if steps is None else tuple(steps),
        use_cfg_zero_star=extra.use_cfg_zero_star,
        use_zero_init=extra.use_zero_init,
        zero_steps=extra.zero_steps,
        amplify_first_chunk=extra.is_amplify_first_chunk,
        negative_prompt=req.negative_prompt,
        max_sequence_length=extra.max_sequence_length,
        image_noise_sigma=sigmas("image"),
        video_noise_sigma=sigmas("video"),
        step_cache=_step_cache(extra.step_cache),
    )


def _step_cache(value: object) -> StepCacheChoice:
    try:
        return step_cache_choice(value)
    except StepCacheError as exc:
        raise bad_request(exc.message, param=f"extra_params.{exc.param}", code=exc.code) from None


def settings_for(req: VideoCreateRequest, model: ModelInfo) -> SamplingSettings:
    """The vocabulary's settings; its params named as this API spells them."""
    try:
        return sampling_settings(model, choices_of(req))
    except RequestError as exc:
        if exc.param in EXTRA_PARAMS:
            exc.param = f"extra_params.{exc.param}"
        raise


def resolve_spec_fields(
    req: VideoCreateRequest, model: ModelInfo, *, seed_source: Callable[[], int] = draw_seed
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
        settings=settings_for(req, model),
        mode=mode,
        reference=ref,
        requested_seconds=None if req.seconds is None else str(req.seconds),
        output_size=req.output_size,
    )
