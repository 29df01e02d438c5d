"""Super-resolution of emitted frames: a weight-free resampler by default, or a real SR network.

The default needs no extra weights: bicubic interpolation in torch, on the engine's device (a
GPU resampler when there is one). `SpandrelUpscaler` loads a real SR network (ESRGAN, SPAN,
Compact, ...) from a weights file through `spandrel` (an optional extra: it needs torchvision).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

from helios_serve.errors import CheckpointError, InvalidInputError

SR_SCALES = (1, 2, 4)
_FRAMES_PER_BATCH = 8  # bounds peak memory: 4x of 640x384 frames is 2560x1536


def _check(frames: npt.NDArray[np.uint8], scale: int) -> None:
    if scale not in SR_SCALES:
        raise InvalidInputError(
            f"sr scale must be one of {SR_SCALES}, got {scale}", param="sr_scale"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InvalidInputError("frames must be uint8 (T, H, W, 3)", param="frames")


def _to_tensor(frames: npt.NDArray[np.uint8], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()


def _to_uint8(x: torch.Tensor) -> npt.NDArray[np.uint8]:
    out: npt.NDArray[np.uint8] = (
        x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    )
    return out


def _batched(
    frames: npt.NDArray[np.uint8],
    scale: int,
    device: torch.device,
    upscale_batch: Callable[[torch.Tensor], torch.Tensor],
) -> npt.NDArray[np.uint8]:
    """Validate, then upscale a few frames at a time (uint8 in, 0..255 floats through)."""
    _check(frames, scale)
    if scale == 1:
        return frames
    out = [
        _to_uint8(upscale_batch(_to_tensor(frames[i : i + _FRAMES_PER_BATCH], device)))
        for i in range(0, len(frames), _FRAMES_PER_BATCH)
    ]
    return np.concatenate(out)


class TorchResampler:
    """Bicubic upscaling on `device`, a few frames at a time."""

    deferrable = True
    """Plain resampling: a WebRTC egress may do it itself, per frame and cheaper."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, frames: npt.NDArray[np.uint8], scale: int) -> npt.NDArray[np.uint8]:
        def resample(x: torch.Tensor) -> torch.Tensor:
            return functional.interpolate(
                x, scale_factor=scale, mode="bicubic", align_corners=False
            )

        return _batched(frames, scale, self.device, resample)


class SpandrelUpscaler:
    """A real SR network loaded with spandrel; its native scale is reached exactly by repeating
    it (a 2x network twice for 4x) or by resampling its output (a 4x network for 2x)."""

    def __init__(self, weights: Path, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._model = _load_spandrel(weights, self.device)
        self.native_scale = int(self._model.scale)

    @torch.no_grad()
    def __call__(self, frames: npt.NDArray[np.uint8], scale: int) -> npt.NDArray[np.uint8]:
        target = (frames.shape[1] * scale, frames.shape[2] * scale) if frames.ndim == 4 else None

        def network(x: torch.Tensor) -> torch.Tensor:
            x = x / 255.0
            reached = 1
            while reached < scale:
                x = self._model(x).clamp(0, 1)
                reached *= self.native_scale
            if target is not None and tuple(x.shape[-2:]) != target:
                x = functional.interpolate(x, size=target, mode="bicubic", align_corners=False)
            return x * 255.0

        return _batched(frames, scale, self.device, network)


def _load_spandrel(weights: Path, device: torch.device) -> Any:
    try:
        import spandrel
    except Exception as exc:  # ImportError, or torchvision built for another torch
        raise CheckpointError(
            f"--sr-weights needs the optional 'spandrel' package (and torchvision matching "
            f"your torch): pip install 'helios-serve[sr]' ({type(exc).__name__}: {exc})"
        ) from None
    if not weights.is_file():
        raise CheckpointError(f"{weights}: no such SR weights file")
    try:
        descriptor = spandrel.ModelLoader(device=device).load_from_file(str(weights))
    except Exception as exc:
        raise CheckpointError(f"{weights}: not an SR network spandrel knows ({exc})") from None
    if int(descriptor.scale) not in (2, 4):
        raise CheckpointError(f"{weights}: a {descriptor.scale}x network; need 2x or 4x")
    descriptor.eval()
    return descriptor
