"""Turn prompts, images and videos into what the transformer reads, in diffusers' RNG order."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from helios_serve.core.types import FRAMES_PER_CHUNK, LATENT_FRAMES_PER_CHUNK

ImageInput = Image.Image | npt.NDArray[np.uint8]
VideoInput = list[Image.Image] | npt.NDArray[np.uint8]


def rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform draw on the generator's device, then moved: works for CPU seeds on a GPU too."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Normal draw with diffusers' `randn_tensor` semantics (fp32, generator device first)."""
    from diffusers.utils.torch_utils import randn_tensor

    out: torch.Tensor = randn_tensor(shape, generator=generator, device=device)
    return out


def noise_latents(
    latents: torch.Tensor, sigma_range: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """`s * eps + (1 - s) * z` with one `s ~ U(lo, hi)`, as diffusers noises the anchor."""
    lo, hi = sigma_range
    sigma = rand((1,), generator, latents.device) * (hi - lo) + lo
    return sigma * randn(tuple(latents.shape), generator, latents.device) + (1 - sigma) * latents


@dataclass(frozen=True)
class LatentStats:
    """The VAE's per-channel normalisation, shaped for 5-D latents."""

    mean: torch.Tensor
    std_inv: torch.Tensor

    @classmethod
    def from_vae(cls, vae: Any, device: torch.device) -> LatentStats:
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(device, vae.dtype)
        std = torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(device, vae.dtype)
        return cls(mean=mean, std_inv=1.0 / std)


class PromptEncoding(Protocol):
    """Anything that turns a prompt into transformer-ready embeddings `(1, seq, text_dim)`."""

    def encode(self, prompt: str, max_sequence_length: int) -> torch.Tensor: ...


class PromptEncoder:
    """Encodes prompts once and keeps a small LRU cache: prompts repeat across chunks and jobs."""

    def __init__(self, pipe: Any, device: torch.device, capacity: int = 16) -> None:
        self._pipe = pipe
        self._device = device
        self._capacity = capacity
        self._cache: OrderedDict[tuple[str, int], torch.Tensor] = OrderedDict()

    @torch.no_grad()
    def encode(self, prompt: str, max_sequence_length: int) -> torch.Tensor:
        key = (prompt, max_sequence_length)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        embeds, _ = self._pipe.encode_prompt(
            prompt=prompt,
            do_classifier_free_guidance=False,
            max_sequence_length=max_sequence_length,
            device=self._device,
        )
        embeds = embeds.to(self._pipe.transformer.dtype)
        self._cache[key] = embeds
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return embeds


class PromptBlend:
    """The prompt embedding per chunk; a new prompt fades in linearly over `chunks` chunks."""

    def __init__(self, prompt: str, embeds: torch.Tensor) -> None:
        self.prompt = prompt
        self._old = embeds
        self._new = embeds
        self._chunks = 1
        self._done = 1

    def switch(self, prompt: str, embeds: torch.Tensor, chunks: int = 1) -> None:
        """Start moving toward `embeds`; from the current mix, so repeated switches stay smooth."""
        self._old = self.current()
        self._new = embeds
        self.prompt = prompt
        self._chunks = max(1, chunks)
        self._done = 0

    def weight(self) -> float:
        """Weight of the new prompt in the chunk about to be generated."""
        return min(1.0, (self._done + 1) / self._chunks)

    def current(self) -> torch.Tensor:
        w = min(1.0, self._done / self._chunks)
        return self._new if w >= 1.0 else torch.lerp(self._old, self._new, w)

    def next_chunk_embeds(self) -> torch.Tensor:
        """Embedding for the next chunk; advances the fade by one chunk."""
        w = self.weight()
        out = self._new if w >= 1.0 else torch.lerp(self._old, self._new, w)
        self._done = min(self._chunks, self._done + 1)
        return out

    def fade(self) -> tuple[torch.Tensor, int, int] | None:
        """(start embeddings, chunks, chunks done) while a fade is in progress, else None."""
        if self._done >= self._chunks:
            return None
        return self._old, self._chunks, self._done

    def resume_fade(self, start: torch.Tensor, chunks: int, done: int) -> None:
        """Put back a fade saved by `fade()`: toward the current prompt, `done` of `chunks`."""
        self._old = start.to(self._new.device, self._new.dtype)
        self._chunks = max(1, chunks)
        self._done = min(max(0, done), self._chunks)


def encode_image(
    pipe: Any,
    image: ImageInput,
    height: int,
    width: int,
    stats: LatentStats,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor latent and "fake" history latent for I2V (both un-noised), diffusers' draw order."""
    pixels = pipe.video_processor.preprocess(image, height=height, width=width)
    anchor, fake = pipe.prepare_image_latents(
        pixels,
        latents_mean=stats.mean,
        latents_std=stats.std_inv,
        num_latent_frames_per_chunk=LATENT_FRAMES_PER_CHUNK,
        dtype=torch.float32,
        device=device,
        generator=generator,
    )
    return anchor, fake


def pad_to_window(frames: list[Image.Image]) -> list[Image.Image]:
    """A clip of fewer than 33 frames with its first frame repeated in front until it fills one
    window: the model conditions on whole 33-frame windows (diffusers refuses shorter ones),
    and the clip's last frames, which the new video continues, stay last."""
    missing = FRAMES_PER_CHUNK - len(frames)
    return [frames[0]] * missing + list(frames) if missing > 0 else frames


def encode_video(
    pipe: Any,
    video: VideoInput,
    height: int,
    width: int,
    stats: LatentStats,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """First-frame anchor latent and the latents of every whole 33-frame window, from the end
    (a clip shorter than one window is padded first: `pad_to_window`)."""
    frames = [Image.fromarray(f) for f in video] if isinstance(video, np.ndarray) else video
    frames = pad_to_window(frames)
    pixels = pipe.video_processor.preprocess_video(frames, height=height, width=width)
    anchor, latents = pipe.prepare_video_latents(
        pixels,
        latents_mean=stats.mean,
        latents_std=stats.std_inv,
        num_latent_frames_per_chunk=LATENT_FRAMES_PER_CHUNK,
        dtype=torch.float32,
        device=device,
        generator=generator,
    )
    return anchor, latents


def noise_video_latents(
    latents: torch.Tensor, sigma_range: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """Noise every latent frame with its own sigma, window by window (diffusers' order)."""
    lo, hi = sigma_range
    windows = []
    for window in latents.split(LATENT_FRAMES_PER_CHUNK, dim=2):
        if window.shape[2] < LATENT_FRAMES_PER_CHUNK:
            break
        n = window.shape[2]
        sigmas = (rand((n,), generator, latents.device) * (hi - lo) + lo).view(1, 1, n, 1, 1)
        windows.append(
            sigmas * randn(tuple(window.shape), generator, latents.device) + (1 - sigmas) * window
        )
    return torch.cat(windows, dim=2)
