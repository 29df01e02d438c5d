"""The Wan VAE decode, rebuilt for speed over diffusers' `AutoencoderKLWan` internals.

diffusers' `vae.decode` calls the decoder once per latent frame (9 calls per chunk), each
threading a cache of the last two frames of every causal 3-D convolution. The convolutions are
causal in time and everything else (norms, the mid-block attention, spatial up-sampling) works
frame by frame, so after latent frame 0 (decoded alone: it is the "first chunk" whose temporal
up-sampler repeats instead of interpolating) the remaining frames can go through the decoder in
ANY partition and give the same frames: every causal window sees the same inputs. One call for
frames 1..8 is the fastest (8x fewer kernel launches, 8x larger convolutions); smaller groups
hand out the first frames sooner (progressive delivery). `iter_video(z, groups)` takes the
partition; tests/engine/test_vae_decode.py checks that every partition equals `vae.decode`.

Also here: channels-last 3-D weights and inputs, `cudnn.benchmark`, and an optional
`torch.compile` of the decoder (all off on the CPU by default; all measured alone by the GPU
check). The cache lives in each call, not in the VAE, so two decodes may interleave.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from helios_serve.engine.conditioning import LatentStats

TEMPORAL_FACTOR = 4
"""Video frames per latent frame after the first (the first latent frame is one video frame)."""


@dataclass(frozen=True)
class DecodeOptions:
    """How the decoder runs; `None` means "on for CUDA, off elsewhere"."""

    batched: bool = True
    """Frames 1..T-1 in one decoder call (else one call per latent frame, as diffusers)."""
    channels_last: bool | None = None
    cudnn_benchmark: bool | None = None
    compile: bool = False
    compile_mode: str | None = None
    """`torch.compile` mode of the decoder (None: the default mode)."""
    compile_backend: str = "inductor"
    """`torch.compile` backend ("aot_eager" traces without code generation: CPU tests)."""


def check_groups(latent_frames: int, groups: Sequence[int]) -> None:
    """`groups` must partition latent frames 1..T-1 into positive sizes."""
    if any(g < 1 for g in groups) or sum(groups) != latent_frames - 1:
        raise ValueError(
            f"groups {list(groups)} must be positive and sum to {latent_frames - 1} "
            f"(latent frames after the first of {latent_frames})"
        )


def video_frames(latent_frames: int) -> int:
    """Video frames decoded from `latent_frames` (33 from 9)."""
    return 1 + TEMPORAL_FACTOR * (latent_frames - 1)


def _to_channels_last_3d(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for param in module.parameters():
            if param.dim() == 5:
                param.data = param.data.contiguous(memory_format=torch.channels_last_3d)


def raise_recompile_limit(at_least: int = 32) -> None:
    """Room for one compiled graph per input shape and path: dynamo's default limit (8) would
    silently fall back to eager past it (each decode group size is its own graph too)."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name) and getattr(config, name) < at_least:
            setattr(config, name, at_least)


class VaeDecoder:
    """Decodes VAE-space latents (what `vae.decode` takes) to video in [-1, 1].

    Owns the layout and compile choices of one VAE: build one per model and share it.
    """

    def __init__(self, vae: Any, options: DecodeOptions | None = None) -> None:
        self.vae = vae
        self.options = options or DecodeOptions()
        on_cuda = next(vae.parameters()).device.type == "cuda"
        self.channels_last = (
            on_cuda if self.options.channels_last is None else self.options.channels_last
        )
        if self.channels_last:
            _to_channels_last_3d(vae.decoder)
            _to_channels_last_3d(vae.post_quant_conv)
        benchmark = self.options.cudnn_benchmark
        if benchmark if benchmark is not None else on_cuda:
            torch.backends.cudnn.benchmark = True
        self._decoder: Any = vae.decoder
        if self.options.compile:
            raise_recompile_limit()
            kwargs: dict[str, Any] = {"dynamic": False, "backend": self.options.compile_backend}
            if self.options.compile_mode is not None:
                kwargs["mode"] = self.options.compile_mode
            self._decoder = torch.compile(vae.decoder, **kwargs)
        self._conv_count = int(vae._cached_conv_counts["decoder"])

    def default_groups(self, latent_frames: int) -> list[int]:
        rest = latent_frames - 1
        if rest <= 0:
            return []
        return [rest] if self.options.batched else [1] * rest

    @torch.no_grad()
    def iter_video(
        self, z: torch.Tensor, groups: Sequence[int] | None = None
    ) -> Iterator[torch.Tensor]:
        """Video of latent frame 0 (one frame), then of each group of latent frames (4 video
        frames per latent frame), each (B, 3, F, H, W) clamped to [-1, 1]."""
        frames = z.shape[2]
        groups = self.default_groups(frames) if groups is None else list(groups)
        check_groups(frames, groups)
        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last_3d)
        x = self.vae.post_quant_conv(z)  # 1x1x1: all frames at once, as diffusers
        cache: list[Any] = [None] * self._conv_count
        start = 0
        for i, size in enumerate([1, *groups]):
            out = self._decoder(
                x[:, :, start : start + size],
                feat_cache=cache,
                feat_idx=[0],
                first_chunk=i == 0,
            )
            start += size
            patch = self.vae.config.patch_size
            if patch is not None:
                from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

                out = unpatchify(out, patch_size=patch)
            yield torch.clamp(out, min=-1.0, max=1.0)

    def video(self, z: torch.Tensor, groups: Sequence[int] | None = None) -> torch.Tensor:
        """The whole chunk's video: `vae.decode(z, return_dict=False)[0]`, faster."""
        parts = list(self.iter_video(z, groups))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def unit_range(video: torch.Tensor) -> torch.Tensor:
    """[-1, 1] video to [0, 1] exactly as diffusers' `VaeImageProcessor.denormalize`."""
    return (video * 0.5 + 0.5).clamp(0, 1)


def quantize_uint8(frames: torch.Tensor) -> torch.Tensor:
    """`to_uint8` in torch, bit for bit: float32 multiply, round half to even, clamp."""
    return torch.round(frames.float() * 255.0).clamp_(0, 255).to(torch.uint8)


def to_uint8(frames: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """[0, 1] floats to uint8 with rounding (diffusers' export truncates; rounding is closer)."""
    out: npt.NDArray[np.uint8] = np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
    return out


def video_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """(1, 3, F, H, W) in [-1, 1] to uint8 (F, H, W, 3) on the same device."""
    return quantize_uint8(unit_range(video[0]).float()).permute(1, 2, 3, 0).contiguous()


class ChunkDecoder:
    """The engine's decode of one chunk: its normalised latents to video, or to uint8 frames.

    `ChunkStreamer` decodes through one of these (its `decoder` argument); a subclass may watch
    or replace the decode (the benchmarks record the latents this way).
    """

    def __init__(self, vae_decoder: VaeDecoder, stats: LatentStats) -> None:
        self.vae_decoder = vae_decoder
        self.stats = stats

    @classmethod
    def for_vae(
        cls, vae: Any, device: torch.device, options: DecodeOptions | None = None
    ) -> ChunkDecoder:
        return cls(VaeDecoder(vae, options), LatentStats.from_vae(vae, device))

    def vae_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The engine's normalised latents in the VAE's space and dtype (as the pipeline)."""
        vae = self.vae_decoder.vae
        return latents.to(vae.dtype) / self.stats.std_inv + self.stats.mean

    def video(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, 3, T, H, W) in [-1, 1], in the VAE's dtype."""
        return self.vae_decoder.video(self.vae_latents(latents))

    def iter_video(self, latents: torch.Tensor, groups: Sequence[int]) -> Iterator[torch.Tensor]:
        """`video` group by group: latent frame 0 first (1 frame), then each group."""
        parts: Iterator[torch.Tensor] = self.vae_decoder.iter_video(
            self.vae_latents(latents), groups
        )
        return parts

    def iter_uint8(self, latents: torch.Tensor, groups: Sequence[int]) -> Iterator[torch.Tensor]:
        """uint8 (F, H, W, 3) frames on the latents' device, group by group: the frames of
        `video(latents)` quantised as `ChunkStreamer.decode_uint8_on_device` does."""
        for part in self.iter_video(latents, groups):
            yield video_to_uint8(part)
