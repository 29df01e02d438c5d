"""StreamConditioning: what a stream is conditioned on, and the calls that change it between
chunks (prompt and its fade, reference image, seed), for `ChunkStreamer`, which it is a base of.

Its state is the stream's: the history latents, the anchor latent, the prompt blend and the
generator (all in `StreamState`); `ChunkStreamer.__init__` sets every attribute declared here.
"""

from __future__ import annotations

from typing import Any

import torch

from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import StreamRequest
from helios_serve.engine import conditioning as cond

HISTORY_SIZES = (16, 2, 1)
"""Long, mid and short history windows in latent frames (19 kept in all)."""


class StreamConditioning:
    request: StreamRequest
    settings: SamplingSettings
    seed: int
    _pipe: Any
    _device: torch.device
    _stats: cond.LatentStats
    _prompts: cond.PromptEncoding
    _latent_hw: tuple[int, int]
    _generator: torch.Generator
    _blend: cond.PromptBlend
    _history: torch.Tensor
    _anchor: torch.Tensor | None

    # ----------------------------------------------------------------- conditioning
    def _encode(self, prompt: str) -> torch.Tensor:
        return self._prompts.encode(prompt, self.settings.max_sequence_length)

    def _zeros(self, frames: int) -> torch.Tensor:
        return torch.zeros(
            1,
            self._pipe.transformer.config.in_channels,
            frames,
            *self._latent_hw,
            device=self._device,
            dtype=torch.float32,
        )

    def _condition_start(self, request: StreamRequest) -> None:
        s, g = self.settings, self._generator
        if request.image is not None:
            anchor, fake = cond.encode_image(
                self._pipe,
                request.image,
                request.height,
                request.width,
                self._stats,
                g,
                self._device,
            )
            self._anchor = cond.noise_latents(anchor, s.image_noise_sigma, g)
            fake = cond.noise_latents(fake, s.video_noise_sigma, g)
            self._history = torch.cat([self._history[:, :, :-1], fake], dim=2)
        elif request.video is not None:
            anchor, latents = cond.encode_video(
                self._pipe,
                request.video,
                request.height,
                request.width,
                self._stats,
                g,
                self._device,
            )
            self._anchor = cond.noise_latents(anchor, s.image_noise_sigma, g)
            latents = cond.noise_video_latents(latents, s.video_noise_sigma, g)
            self._history = torch.cat([self._history, latents], dim=2)[:, :, -sum(HISTORY_SIZES) :]
            self._history = self._history.contiguous()

    @property
    def prompt(self) -> str:
        return self._blend.prompt

    @torch.no_grad()
    def set_prompt(self, prompt: str, blend_chunks: int = 1) -> None:
        """Switch prompts at the next chunk boundary, faded in over `blend_chunks` chunks."""
        self._blend.switch(prompt, self._encode(prompt), blend_chunks)

    @torch.no_grad()
    def set_image(self, image: cond.ImageInput, *, restart: bool = False) -> None:
        """Re-anchor on `image` from the next chunk; `restart` also resets history (hard cut)."""
        anchor, fake = cond.encode_image(
            self._pipe,
            image,
            self.request.height,
            self.request.width,
            self._stats,
            self._generator,
            self._device,
        )
        self._anchor = cond.noise_latents(anchor, self.settings.image_noise_sigma, self._generator)
        if restart:
            fake = cond.noise_latents(fake, self.settings.video_noise_sigma, self._generator)
            self._history = torch.cat([self._zeros(sum(HISTORY_SIZES) - 1), fake], dim=2)

    def clear_image(self) -> None:
        """Drop the anchor: the next chunk is anchored on its own first latent frame (as T2V)."""
        self._anchor = None

    def set_seed(self, seed: int) -> None:
        """Reseed the stream's generator; draws from the next chunk on use it."""
        self.seed = seed
        self._generator = torch.Generator("cpu").manual_seed(seed)
