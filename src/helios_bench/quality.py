"""Numerical comparisons of two runs: latents per chunk, decoded frames, and a latent recorder."""

from __future__ import annotations

import math
from typing import Any

import torch

from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.vae_decode import ChunkDecoder, DecodeOptions, unit_range


class RecordingDecoder(ChunkDecoder):
    """Decodes as the engine does and keeps every chunk's latents (float32, on the host): the
    stream hands its decoder each chunk's denoised latents, so this sees exactly those."""

    def __init__(self, inner: ChunkDecoder, store: list[torch.Tensor]) -> None:
        super().__init__(inner.vae_decoder, inner.stats)
        self.store = store

    @classmethod
    def for_model(
        cls, model: LoadedModel, store: list[torch.Tensor], options: DecodeOptions | None = None
    ) -> RecordingDecoder:
        vae = model.pipe.vae
        return cls(ChunkDecoder.for_vae(vae, model.device, options), store)

    def video(self, latents: torch.Tensor) -> torch.Tensor:
        self.store.append(latents.detach().float().cpu())
        return super().video(latents)


def relative_errors(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[dict[str, Any]]:
    """Per chunk: max |a-b| / max |b|, mean |a-b| / mean |b|, cosine similarity."""
    out = []
    for x, y in zip(a, b, strict=False):
        x64, y64 = x.double(), y.double()
        diff = (x64 - y64).abs()
        ref = y64.abs()
        out.append(
            {
                "max_rel": float(diff.max() / ref.max().clamp_min(1e-30)),
                "mean_rel": float(diff.mean() / ref.mean().clamp_min(1e-30)),
                "max_abs": float(diff.max()),
                "cosine": cosine(x64, y64),
                "finite": bool(torch.isfinite(x).all()),
            }
        )
    return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = a.double().flatten(), b.double().flatten()
    return float((x @ y) / (x.norm() * y.norm()).clamp_min(1e-30))


def psnr(frames: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of frames in [0, 1] against reference frames in [0, 1] (inf when equal)."""
    mse = float(((frames.double() - reference.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def frame_errors(video: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Decoded videos in [-1, 1] compared as frames in [0, 1]: PSNR, max and mean abs error."""
    a, b = unit_range(video.float()), unit_range(reference.float())
    diff = (a - b).abs()
    return {"psnr_db": psnr(a, b), "max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
