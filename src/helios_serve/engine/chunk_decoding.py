"""How one stream turns a chunk's final latents into frames: whole, group by group as they are
decoded (progressive delivery), on a second CUDA stream while the next chunk denoises, or on a
decode rank of its own (`engine.parallel`). `ChunkStreamer` owns one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from helios_serve.core.protocols import Priority
from helios_serve.core.types import FRAMES_PER_CHUNK, LATENT_FRAMES_PER_CHUNK, DecodedFrames
from helios_serve.engine.conditioning import LatentStats
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.vae_decode import ChunkDecoder, VaeDecoder, quantize_uint8
from helios_serve.errors import StreamCancelledError

CancelCheck = Callable[[], bool]
FramesHandler = Callable[[DecodedFrames], None]
FramesFuture = Callable[[], npt.NDArray[np.uint8]]
SESSION_DECODE_GROUPS = (1, 1, 2, 4)
"""How a live session's streams decode the latent frames after the first: one, one, two, then
four per decoder call, so the first frames are out after one small call each (progressive
delivery: frame 0, then 4, 4, 8 and 16 frames), and each group plays for longer than the next,
twice its size, takes to decode, while most frames still go through the decoder batched. A job's
stream decodes frames 1..8 in one call, the fastest way to the whole chunk."""


def decode_groups_for(priority: Priority) -> tuple[int, ...] | None:
    """The decode partition of a stream opened at `priority` (None: the decoder's default)."""
    return SESSION_DECODE_GROUPS if priority is Priority.SESSION else None


class ChunkDecoding:
    """One stream's decode: `decoder` (default: the model's), in `groups` per decoder call."""

    def __init__(
        self,
        model: LoadedModel,
        stats: LatentStats,
        decoder: ChunkDecoder | None = None,
        groups: Sequence[int] | None = None,
    ) -> None:
        self._pipe: Any = model.pipe
        self._device = model.device
        self.decoder = decoder or ChunkDecoder(
            model.vae_decoder or VaeDecoder(model.pipe.vae), stats
        )
        self.groups = None if groups is None else list(groups)
        """Latent frames after the first per decoder call, for every chunk, asked for
        progressively or not, so both give the same bytes (None: the decoder's default)."""
        self._remote = model.parallel.decoder if model.parallel is not None else None
        self._side = torch.cuda.Stream(self._device) if self._device.type == "cuda" else None
        self.on_latents: Callable[[torch.Tensor], None] | None = None
        """A measurement seam: sees each chunk's final latents just before their VAE decode
        (the GPU suite compares them with diffusers'); None in production."""

    def progressively(
        self,
        index: int,
        latents: torch.Tensor,
        on_frames: FramesHandler,
        should_cancel: CancelCheck | None,
    ) -> npt.NDArray[np.uint8]:
        """Decode group by group, handing each group's frames to `on_frames` before the next
        is decoded; stop between groups once `should_cancel()` holds."""
        groups = self.groups or self.decoder.vae_decoder.default_groups(LATENT_FRAMES_PER_CHUNK)
        parts: list[npt.NDArray[np.uint8]] = []
        at = 0
        for part in self.decoder.iter_uint8(latents, groups):
            frames: npt.NDArray[np.uint8] = part.cpu().numpy()
            on_frames(DecodedFrames(index, at, frames))
            parts.append(frames)
            at += len(frames)
            if at < FRAMES_PER_CHUNK and should_cancel is not None and should_cancel():
                raise StreamCancelledError(f"cancelled in the decode of chunk {index}")
        return np.concatenate(parts)

    def start(self, latents: torch.Tensor) -> FramesFuture:
        """Queue the decode of `latents`; the returned callable waits for its uint8 frames."""
        if self._remote is not None:  # a decode rank of its own (engine.parallel)
            return self._remote.start(latents)  # type: ignore[no-any-return]
        side = self._side
        if side is None:
            frames = self.uint8_on_device(latents).cpu().numpy()
            return lambda: frames
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(side):
            latents.record_stream(side)
            on_device = self.uint8_on_device(latents)
            host = torch.empty(on_device.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(on_device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(side)

        def wait() -> npt.NDArray[np.uint8]:
            done.synchronize()
            out: npt.NDArray[np.uint8] = host.numpy()
            return out

        return wait

    def video(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-decode one chunk's latents: (1, 3, T, H, W) in [-1, 1], in the VAE's dtype."""
        if self.on_latents is not None:
            self.on_latents(latents)
        if self.groups is None:
            return self.decoder.video(latents)
        return torch.cat(list(self.decoder.iter_video(latents, self.groups)), dim=2)

    def float_frames(self, latents: torch.Tensor) -> npt.NDArray[np.float32]:
        """Float frames (T, H, W, 3) in [0, 1], as diffusers' `output_type="np"`."""
        frames: npt.NDArray[np.float32] = self._pipe.video_processor.postprocess_video(
            self.video(latents), output_type="np"
        )[0]
        return frames

    def uint8_on_device(self, latents: torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, 3) on the model's device, equal to `to_uint8(float_frames(...))`."""
        # the pipeline's own [-1, 1] -> [0, 1] mapping, kept on the device ("pt")
        unit = self._pipe.video_processor.postprocess_video(self.video(latents), output_type="pt")[
            0
        ]
        return quantize_uint8(unit.float()).permute(0, 2, 3, 1).contiguous()
