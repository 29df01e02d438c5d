"""One chunk's denoising: the Base (single-stage CFG) and pyramid (Mid / Distilled) samplers.

Each mirrors the chunk body of diffusers' `HeliosPipeline` / `HeliosPyramidPipeline.__call__`
step for step and draw for draw, so a stream equals the pipeline for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.conditioning import randn
from helios_serve.engine.guidance import (
    GuidancePasses,
    SequentialPasses,
    cfg_zero_star,
    classifier_free,
)

StepCallback = Callable[[int, int, int], None]
"""Called after each step with (stage, step, steps_in_chunk); may raise to cancel."""


@dataclass
class ChunkInputs:
    """What the transformer reads for one chunk, besides the noisy latents."""

    history_short: torch.Tensor
    history_mid: torch.Tensor
    history_long: torch.Tensor
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    indices: dict[str, torch.Tensor]


def history_indices(num_latent_frames: int, sizes: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """RoPE frame indices: anchor 0, long, mid, last, then the noisy frames (same every chunk)."""
    idx = torch.arange(0, 1 + sum(sizes) + num_latent_frames)
    prefix, long, mid, one, noisy = idx.split([1, *sizes, num_latent_frames])
    return {
        "indices_hidden_states": noisy.unsqueeze(0),
        "indices_latents_history_short": torch.cat([prefix, one]).unsqueeze(0),
        "indices_latents_history_mid": mid.unsqueeze(0),
        "indices_latents_history_long": long.unsqueeze(0),
    }


def calculate_shift(seq_len: int, config: Any) -> float:
    """Timestep shift `mu` from the token count (the scheduler config's own bounds)."""
    base_len = config.get("base_image_seq_len", 256)
    max_len = config.get("max_image_seq_len", 4096)
    base_shift = config.get("base_shift", 0.5)
    max_shift = config.get("max_shift", 1.15)
    m = (max_shift - base_shift) / (max_len - base_len)
    return float(seq_len * m + (base_shift - m * base_len))


StageHook = Callable[[int, int], None]
"""Called before each sampling stage with (stage, steps_in_stage): Base has one stage."""


class Denoiser:
    """Runs the transformer with or without guidance; owns nothing but references.

    `guidance` decides how the two guidance passes run (`engine.guidance`); `on_stage` is told
    where each stage starts (step caching resets there).
    """

    def __init__(
        self,
        transformer: Any,
        settings: SamplingSettings,
        guidance: GuidancePasses | None = None,
        on_stage: StageHook | None = None,
    ) -> None:
        self.transformer = transformer
        self.settings = settings
        self.guidance: GuidancePasses = guidance or SequentialPasses()
        self.on_stage = on_stage

    def begin_stage(self, stage: int, steps: int) -> None:
        if self.on_stage is not None:
            self.on_stage(stage, steps)

    def predict(
        self, latents: torch.Tensor, timestep: torch.Tensor, inputs: ChunkInputs, zero_init: bool
    ) -> torch.Tensor:
        dtype = self.transformer.dtype
        common = {
            "hidden_states": latents.to(dtype),
            "timestep": timestep,
            "latents_history_short": inputs.history_short.to(dtype),
            "latents_history_mid": inputs.history_mid.to(dtype),
            "latents_history_long": inputs.history_long.to(dtype),
            "return_dict": False,
            **inputs.indices,
        }
        if not self.settings.uses_cfg:
            with self.transformer.cache_context("cond"):
                return self.transformer(  # type: ignore[no-any-return]
                    encoder_hidden_states=inputs.prompt_embeds, **common
                )[0]
        assert inputs.negative_embeds is not None
        cond, uncond = self.guidance.run(
            self.transformer, common, inputs.prompt_embeds, inputs.negative_embeds
        )
        g = self.settings.guidance_scale
        if not self.settings.use_cfg_zero_star:
            return classifier_free(cond, uncond, g)
        return cfg_zero_star(cond, uncond, g, zero_init)


def sample_base(
    denoiser: Denoiser,
    scheduler: Any,
    latents: torch.Tensor,
    inputs: ChunkInputs,
    generator: torch.Generator,
    patch_size: tuple[int, ...],
    on_step: StepCallback,
) -> torch.Tensor:
    """Single-stage UniPC flow sampling with CFG (HeliosPipeline)."""
    steps = denoiser.settings.num_inference_steps
    _, _, frames, h, w = latents.shape
    seq_len = frames * h * w // math.prod(patch_size)
    sigmas = np.linspace(0.999, 0.0, steps + 1)[:-1]
    mu = calculate_shift(seq_len, scheduler.config)
    scheduler.set_timesteps(steps, device=latents.device, sigmas=sigmas, mu=mu)
    timesteps = scheduler.timesteps
    denoiser.begin_stage(0, len(timesteps))
    for i, t in enumerate(timesteps):
        pred = denoiser.predict(latents, t.expand(latents.shape[0]), inputs, zero_init=False)
        latents = scheduler.step(pred, t, latents, generator=generator, return_dict=False)[0]
        on_step(0, i + 1, len(timesteps))
    return latents


def pyramid_steps_in_chunk(settings: SamplingSettings, amplify: bool) -> int:
    total = sum(settings.pyramid_steps)
    return total * 2 if amplify else total


def sample_pyramid(
    denoiser: Denoiser,
    scheduler: Any,
    latents: torch.Tensor,
    inputs: ChunkInputs,
    generator: torch.Generator,
    patch_size: tuple[int, ...],
    *,
    distilled: bool,
    amplify: bool,
    on_step: StepCallback,
) -> torch.Tensor:
    """Pyramid sampling (HeliosPyramidPipeline): coarse-to-fine stages, UniPC or DMD."""
    settings = denoiser.settings
    stages = len(settings.pyramid_steps)
    latents = _downsample_noise(latents, stages)
    start_points = [latents] if distilled else None
    total_steps = pyramid_steps_in_chunk(settings, amplify and distilled)
    done = 0
    for stage in range(stages):
        _, _, frames, h, w = latents.shape
        mu = calculate_shift(frames * h * w // math.prod(patch_size), scheduler.config)
        scheduler.set_timesteps(
            settings.pyramid_steps[stage],
            stage,
            device=latents.device,
            mu=mu,
            is_amplify_first_chunk=amplify,
        )
        timesteps = scheduler.timesteps
        if stage > 0:
            latents = _renoise_upsampled(
                latents, scheduler, stage, generator, patch_size, denoiser.transformer.dtype
            )
            if start_points is not None:
                start_points.append(latents)
        denoiser.begin_stage(stage, len(timesteps))
        for i, t in enumerate(timesteps):
            timestep = t.expand(latents.shape[0]).to(torch.int64)
            zero_init = settings.use_zero_init and stage == 0 and i <= settings.zero_steps
            pred = denoiser.predict(latents, timestep, inputs, zero_init=zero_init)
            extra = {}
            if start_points is not None:
                extra = {
                    "cur_sampling_step": i,
                    "dmd_noisy_tensor": start_points[stage],
                    "dmd_sigmas": scheduler.sigmas,
                    "dmd_timesteps": scheduler.timesteps,
                    "all_timesteps": timesteps,
                }
            latents = scheduler.step(
                pred, t, latents, generator=generator, return_dict=False, **extra
            )[0]
            done += 1
            on_step(stage, done, total_steps)
    return latents


def _frames_as_batch(latents: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    b, c, f, h, w = latents.shape
    return latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w), (b, f, c)


def _frames_back(x: torch.Tensor, dims: tuple[int, int, int]) -> torch.Tensor:
    b, f, c = dims
    return x.reshape(b, f, c, x.shape[-2], x.shape[-1]).permute(0, 2, 1, 3, 4)


def _downsample_noise(latents: torch.Tensor, stages: int) -> torch.Tensor:
    x, dims = _frames_as_batch(latents)
    h, w = x.shape[-2:]
    for _ in range(stages - 1):
        h, w = h // 2, w // 2
        x = functional.interpolate(x, size=(h, w), mode="bilinear") * 2
    return _frames_back(x, dims)


def _renoise_upsampled(
    latents: torch.Tensor,
    scheduler: Any,
    stage: int,
    generator: torch.Generator,
    patch_size: tuple[int, ...],
    model_dtype: torch.dtype,
) -> torch.Tensor:
    """Nearest-upsample x2 and re-noise with correlated block noise (fixes block artifacts)."""
    x, dims = _frames_as_batch(latents)
    x = functional.interpolate(x, size=(x.shape[-2] * 2, x.shape[-1] * 2), mode="nearest")
    latents = _frames_back(x, dims)
    ori_sigma = 1 - scheduler.ori_start_sigmas[stage]
    gamma = scheduler.config.gamma
    alpha = 1 / (math.sqrt(1 + (1 / gamma)) * (1 - ori_sigma) + ori_sigma)
    beta = alpha * (1 - ori_sigma) / math.sqrt(gamma)
    noise = sample_block_noise(
        tuple(latents.shape),
        gamma,
        patch_size,
        generator,  # type: ignore[arg-type]
        latents.device,
    )
    return alpha * latents + beta * noise.to(device=latents.device, dtype=model_dtype)


def block_noise_factor(gamma: float, block_size: int, device: torch.device) -> torch.Tensor:
    """Cholesky factor of the block covariance; float64 fallback where float32 is singular."""
    eye = torch.eye(block_size, device=device)
    cov = eye * (1 + gamma) - torch.ones(block_size, block_size, device=device) * gamma
    cov = (cov + eye * 1e-8).float()
    try:
        return torch.linalg.cholesky(cov)
    except RuntimeError:  # gamma == 1/3 exactly: singular in float32 (spec pitfall 1)
        return torch.linalg.cholesky(cov.double()).float()


def sample_block_noise(
    shape: tuple[int, int, int, int, int],
    gamma: float,
    patch_size: tuple[int, ...],
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Noise correlated within each (ph, pw) block, drawn exactly as diffusers draws it."""
    b, c, f, h, w = shape
    _, ph, pw = patch_size
    factor = block_noise_factor(gamma, ph * pw, device)
    blocks = b * c * f * (h // ph) * (w // pw)
    z = torch.randn(blocks, ph * pw, generator=generator, device=generator.device).to(device)
    noise = (z @ factor.T).view(b, c, f, h // ph, w // pw, ph, pw)
    return noise.permute(0, 1, 2, 3, 5, 4, 6).reshape(b, c, f, h, w)


def initial_noise(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """The chunk's starting noise, fp32, as `prepare_latents` draws it."""
    return randn(shape, generator, device)
