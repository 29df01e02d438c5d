"""The real Helios 14B architecture with random weights, and its FLOP count per chunk.

No 14B weights can be downloaded here, so GPU speed is measured on the exact architecture with
random bf16 weights created directly on the GPU: speed does not depend on the weight values.
Prompts are replaced by random embeddings of the real UMT5-XXL output shape (1, 512, 4096).

FLOP model (2 FLOPs per multiply-add), per transformer forward, with d = hidden size,
F = FFN width, T = text tokens, N = noisy tokens, H = history tokens, L = N + H:

- per layer (x ``num_layers``):
  - self-attention projections q, k, v, o on all tokens: ``8·d²·L``
  - self-attention scores and weighted values: ``4·L²·d``
  - cross-attention (history tokens skip it, ``guidance_cross_attn``): q and o on the noisy
    tokens ``4·d²·N``, k and v on the text ``4·d²·T``, scores and values ``4·N·T·d``
  - feed-forward, two matmuls on all tokens: ``4·d·F·L``
- once per forward: text embedder MLP ``2·T·(text_dim·d + d²)``, patch embeddings (noisy and the
  three history convs), output projection, timestep embeddings (two: t and the history's t=0).

Tokens at latent size (h, w) = (height/8, width/8), patch (1, 2, 2): noisy ``9·(h_s/2)·(w_s/2)``
where h_s, w_s halve per pyramid stage below the last; history (always full resolution) short
``2·(h/2)·(w/2)`` (anchor + last frame), mid ``1·⌈h/4⌉·⌈w/4⌉`` (2 frames, kernel 2x4x4), long
``4·⌈h/8⌉·⌈w/8⌉`` (16 frames, kernel 4x8x8). At 640x384: N = 540 / 2,160 / 8,640 per stage,
H = 1,920 + 240 + 240 = 2,400; a [1,1,1] chunk is ≈ 0.54 PFLOP (the spec's ≈ 540 TFLOP).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from helios_serve.core.types import LATENT_FRAMES_PER_CHUNK, Variant
from helios_serve.engine.loader import LoadedModel

HISTORY_FRAMES = (16, 2, 2)
"""Latent frames read by the long, mid and short history patches (short = anchor + last)."""

HISTORY_KERNEL_SCALES = (1, 2, 4)
"""Short, mid and long history conv kernels are the patch size times these."""

TEXT_TOKENS = 512
"""UMT5-XXL prompts are zero-padded to 512 tokens."""

HELIOS_14B_TRANSFORMER: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_dim": (44, 42, 42),
    "has_multi_term_memory_patch": True,
    "guidance_cross_attn": True,
    "zero_history_timestep": True,
}
"""Helios-{Base,Mid,Distilled} transformer: Wan2.1-T2V-14B plus the multi-term memory patch."""

WAN21_VAE: dict[str, Any] = {
    "base_dim": 96,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "temperal_downsample": [False, True, True],
}
"""The Wan2.1 VAE (AutoencoderKLWan defaults, 127 M parameters)."""

SCHEDULER_GAMMA = 0.33333
"""Block-noise gamma. Real checkpoints carry ~1/3; exactly 1/3 makes the float32 Cholesky in
diffusers' ``sample_block_noise`` singular (spec pitfall 1) and would crash the baseline. The
difference has no effect on speed."""


@dataclass(frozen=True)
class TransformerDims:
    """What the FLOP count needs to know about a HeliosTransformer3DModel."""

    num_layers: int
    hidden: int
    ffn: int
    text_dim: int
    in_channels: int
    out_channels: int
    freq_dim: int
    patch: tuple[int, int, int]
    text_tokens: int = TEXT_TOKENS

    @classmethod
    def from_config(cls, config: Any, text_tokens: int = TEXT_TOKENS) -> TransformerDims:
        pt, ph, pw = (int(p) for p in config["patch_size"])
        return cls(
            num_layers=int(config["num_layers"]),
            hidden=int(config["num_attention_heads"]) * int(config["attention_head_dim"]),
            ffn=int(config["ffn_dim"]),
            text_dim=int(config["text_dim"]),
            in_channels=int(config["in_channels"]),
            out_channels=int(config["out_channels"] or config["in_channels"]),
            freq_dim=int(config["freq_dim"]),
            patch=(pt, ph, pw),
            text_tokens=text_tokens,
        )


def history_token_counts(
    latent_h: int, latent_w: int, patch: tuple[int, int, int]
) -> tuple[int, int, int]:
    """Tokens of the short, mid and long history patches (padded up like diffusers does)."""
    counts = []
    for frames, scale in zip(HISTORY_FRAMES[::-1], HISTORY_KERNEL_SCALES, strict=True):
        kt, kh, kw = (p * scale for p in patch)
        counts.append(math.ceil(frames / kt) * math.ceil(latent_h / kh) * math.ceil(latent_w / kw))
    short, mid, long = counts
    return short, mid, long


def stage_noisy_tokens(
    height: int, width: int, stages: int, patch: tuple[int, int, int], vae_scale: int = 8
) -> list[int]:
    """Noisy tokens per pyramid stage (one entry for the single-stage Base sampler)."""
    pt, ph, pw = patch
    h, w = height // vae_scale, width // vae_scale
    out = []
    for stage in range(stages):
        shrink = 2 ** (stages - 1 - stage)
        out.append((LATENT_FRAMES_PER_CHUNK // pt) * (h // shrink // ph) * (w // shrink // pw))
    return out


def transformer_flops_per_forward(
    dims: TransformerDims, noisy: int, history: tuple[int, int, int]
) -> float:
    """FLOPs of one transformer forward over `noisy` + short/mid/long `history` tokens."""
    d, f, t = dims.hidden, dims.ffn, dims.text_tokens
    seq = noisy + sum(history)
    per_layer = (
        8 * d * d * seq
        + 4 * seq * seq * d
        + 4 * d * d * noisy
        + 4 * d * d * t
        + 4 * noisy * t * d
        + 4 * d * f * seq
    )
    patch_in = dims.in_channels * math.prod(dims.patch)
    history_in = sum(
        n * patch_in * s**3 for n, s in zip(history, HISTORY_KERNEL_SCALES, strict=True)
    )
    embeds = (
        2 * t * (dims.text_dim * d + d * d)
        + 2 * (noisy * patch_in + history_in) * d
        + 2 * noisy * d * dims.out_channels * math.prod(dims.patch)
        + 2 * 2 * (dims.freq_dim * d + d * d + d * 6 * d)
    )
    return float(dims.num_layers * per_layer + embeds)


def transformer_flops_per_chunk(
    dims: TransformerDims, height: int, width: int, steps_per_stage: Sequence[int], *, cfg: bool
) -> float:
    """FLOPs of the transformer calls of one chunk.

    `steps_per_stage`: the pyramid steps (doubled for an amplified first chunk), or
    ``[num_inference_steps]`` for the single-stage Base sampler. With `cfg` every step runs
    the transformer twice (conditional and unconditional).
    """
    stages = len(steps_per_stage)
    lh, lw = height // 8, width // 8
    history = history_token_counts(lh, lw, dims.patch)
    noisy = stage_noisy_tokens(height, width, stages, dims.patch)
    calls = 2 if cfg else 1
    return sum(
        steps * calls * transformer_flops_per_forward(dims, n, history)
        for steps, n in zip(steps_per_stage, noisy, strict=True)
    )


class RandomPromptEncoder:
    """Stands in for UMT5-XXL: a fixed random embedding per prompt, shaped (1, seq, text_dim)."""

    def __init__(self, text_dim: int, device: torch.device, dtype: torch.dtype) -> None:
        self.text_dim = text_dim
        self.device = device
        self.dtype = dtype
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

    def encode(self, prompt: str, max_sequence_length: int) -> torch.Tensor:
        key = (prompt, max_sequence_length)
        if key not in self._cache:
            g = torch.Generator("cpu").manual_seed(zlib.crc32(prompt.encode()))
            embeds = torch.randn(1, max_sequence_length, self.text_dim, generator=g) * 0.1
            self._cache[key] = embeds.to(self.device, self.dtype)
        return self._cache[key]


def _construct(factory: Callable[[], Any], device: torch.device, dtype: torch.dtype) -> Any:
    """Build a module with its parameters created on `device` in `dtype` (no host copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return factory()
    finally:
        torch.set_default_dtype(previous)


def _keep_in_fp32(model: Any) -> None:
    """Upcast what diffusers' `from_pretrained` keeps in fp32 (norms, modulation tables)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(k in name.split(".") for k in keep):
                param.data = param.data.float()


def build_scheduler(variant: Variant) -> Any:
    """The scheduler each published checkpoint ships (3-stage pyramid or single stage)."""
    from diffusers import HeliosDMDScheduler, HeliosScheduler

    if variant is Variant.BASE:
        return HeliosScheduler(stages=1, stage_range=[0, 1], use_dynamic_shifting=True)
    if variant is Variant.MID:
        return HeliosScheduler(
            stages=3,
            stage_range=[0, 1 / 3, 2 / 3, 1],
            gamma=SCHEDULER_GAMMA,
            use_dynamic_shifting=True,
        )
    return HeliosDMDScheduler(
        stages=3, gamma=SCHEDULER_GAMMA, use_dynamic_shifting=True, time_shift_type="linear"
    )


@dataclass(frozen=True)
class RandomModelSpec:
    """A random-weight model: transformer and VAE configs plus where and in what precision."""

    transformer: dict[str, Any]
    vae: dict[str, Any]
    device: torch.device
    dtype: torch.dtype = torch.bfloat16
    vae_dtype: torch.dtype = torch.float32
    name: str = "helios-14b-random"


def build_random_components(spec: RandomModelSpec) -> tuple[Any, Any]:
    """Transformer and VAE with random weights, created directly on `spec.device`."""
    from diffusers import AutoencoderKLWan, HeliosTransformer3DModel

    transformer = _construct(
        lambda: HeliosTransformer3DModel(**spec.transformer), spec.device, spec.dtype
    ).eval()
    _keep_in_fp32(transformer)
    vae = _construct(lambda: AutoencoderKLWan(**spec.vae), spec.device, spec.vae_dtype).eval()
    return transformer, vae


def random_model(
    spec: RandomModelSpec,
    variant: Variant,
    components: tuple[Any, Any],
    attention_backend: str = "native",
) -> LoadedModel:
    """A pipeline of `variant` around shared random components, with no text encoder."""
    from diffusers import HeliosPipeline, HeliosPyramidPipeline

    transformer, vae = components
    parts = {
        "tokenizer": None,
        "text_encoder": None,
        "transformer": transformer,
        "vae": vae,
        "scheduler": build_scheduler(variant),
    }
    if variant is Variant.BASE:
        pipe = HeliosPipeline(**parts)
    else:
        pipe = HeliosPyramidPipeline(
            **parts,
            is_cfg_zero_star=variant is Variant.MID,
            is_distilled=variant is Variant.DISTILLED,
        )
    pipe.set_progress_bar_config(disable=True)
    transformer.set_attention_backend(attention_backend)
    return LoadedModel(
        pipe=pipe,
        name=spec.name,
        path=Path(f"<random {spec.name}>"),
        variant=variant,
        device=spec.device,
        is_tiny=False,
    )
