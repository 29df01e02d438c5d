"""The decode rank: chunk k decodes there while rank 0 denoises chunk k+1.

Rank 0 sends a chunk's latents (a shape header, then the float32 latents: device to device on
GPUs, NCCL peer to peer) and goes on denoising; the decode rank decodes them with the engine's
own decoder (`vae_decode.ChunkDecoder`: the same frames as rank 0 would make, bit for bit) and
sends the uint8 frames back, which rank 0 receives only when it needs them. The decode rank
holds the VAE and nothing of any stream.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from helios_serve.engine.parallel.group import RankGroups, RankSpec
from helios_serve.engine.vae_decode import ChunkDecoder, video_to_uint8

logger = logging.getLogger(__name__)

LATENT_DIMS = 5
FRAME_DIMS = 4


def load_decoder(spec: RankSpec) -> ChunkDecoder:
    from diffusers import AutoencoderKLWan

    device = torch.device(spec.layout.device_of(spec.rank))
    dtype = torch.bfloat16 if spec.options.vae_dtype == "bfloat16" else torch.float32
    vae = AutoencoderKLWan.from_pretrained(str(spec.checkpoint), subfolder="vae", dtype=dtype)
    vae.to(device).eval()
    return ChunkDecoder.for_vae(vae, device, spec.options.load.decode)


def _send_shaped(tensor: torch.Tensor, dst: int, group: Any) -> None:
    dist.send(torch.tensor(tensor.shape, dtype=torch.int64), dst=dst, group=group)
    dist.send(tensor.contiguous(), dst=dst, group=group)


def _recv_shaped(
    dims: int, dtype: torch.dtype, device: torch.device, src: int, group: Any
) -> torch.Tensor | None:
    shape = torch.zeros(dims, dtype=torch.int64)
    dist.recv(shape, src=src, group=group)
    if not int(shape.prod()):
        return None  # the stop sign
    tensor = torch.empty(tuple(shape.tolist()), dtype=dtype, device=device)
    dist.recv(tensor, src=src, group=group)
    return tensor


class RemoteDecoder:
    """Rank 0's side: `start(latents)` sends them and returns a call that waits for frames."""

    def __init__(self, groups: RankGroups, device: torch.device) -> None:
        assert groups.layout.decode_rank is not None
        self._groups = groups
        self._rank = groups.layout.decode_rank
        self._device = device

    def start(self, latents: torch.Tensor) -> Any:
        _send_shaped(latents.float(), self._rank, self._groups.decode)

        def wait() -> npt.NDArray[np.uint8]:
            frames = _recv_shaped(
                FRAME_DIMS, torch.uint8, self._device, self._rank, self._groups.decode
            )
            assert frames is not None
            out: npt.NDArray[np.uint8] = frames.cpu().numpy()
            return out

        return wait

    def close(self) -> None:
        stop = torch.zeros(LATENT_DIMS, dtype=torch.int64)
        dist.send(stop, dst=self._rank, group=self._groups.decode)


def serve_decodes(decoder: ChunkDecoder, groups: RankGroups) -> None:
    """The decode rank's loop: decode what rank 0 sends until it sends the stop sign."""
    device = torch.device(groups.layout.device_of(groups.rank))
    logger.info("decode rank ready on %s", device)
    while True:
        latents = _recv_shaped(LATENT_DIMS, torch.float32, device, 0, groups.decode)
        if latents is None:
            return
        with torch.no_grad():
            frames = video_to_uint8(decoder.video(latents))
        _send_shaped(frames, 0, groups.decode)
