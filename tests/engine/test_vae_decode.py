"""The rebuilt VAE decode equals diffusers' `vae.decode` for every partition of the frames."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from helios_serve.core.settings import PRESETS
from helios_serve.core.types import Variant
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest
from helios_serve.engine.tiny import _build_vae
from helios_serve.engine.vae_decode import ChunkDecoder, DecodeOptions, VaeDecoder, check_groups


def _latents(dtype: torch.dtype) -> torch.Tensor:
    """5 latent frames (17 video frames) at 16x16: the smallest that has every cache case
    (frame 0, then groups of 1, 2 and more after it)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 16, 5, 2, 2, generator=g).to(dtype)


@pytest.fixture(scope="module")
def vae32() -> Any:
    torch.manual_seed(0)
    return _build_vae()


@pytest.fixture(scope="module")
def vae64(vae32: Any) -> Any:
    return copy.deepcopy(vae32).double()


@pytest.fixture(scope="module")
def exact(vae64: Any) -> torch.Tensor:
    """diffusers' decode in float64: the reference every float64 partition must equal."""
    with torch.no_grad():
        out: torch.Tensor = vae64.decode(_latents(torch.float64), return_dict=False)[0]
    return out


@pytest.mark.parametrize("groups", [[4], [2, 2], [1, 3]])
def test_every_partition_equals_vae_decode_in_float64(
    vae64: Any, exact: torch.Tensor, groups: list[int]
) -> None:
    got = VaeDecoder(vae64).video(_latents(torch.float64), groups)
    assert got.shape == exact.shape == (1, 3, 17, 16, 16)
    assert torch.equal(got, exact)  # bit for bit: the same arithmetic, only batched
    assert float(exact.std()) > 1e-3


def test_float32_batched_decode_is_within_diffusers_own_rounding(
    vae32: Any, exact: torch.Tensor
) -> None:
    z = _latents(torch.float32)
    with torch.no_grad():
        reference = vae32.decode(z, return_dict=False)[0]
    per_frame = VaeDecoder(vae32, DecodeOptions(batched=False)).video(z)
    assert torch.equal(per_frame, reference)  # one frame per call is diffusers' loop exactly
    batched = VaeDecoder(vae32).video(z)
    # float32 convolutions over 8 frames round differently from 1 frame; both stay as close to
    # the float64 result as diffusers' own decode is
    ours = float((batched.double() - exact).abs().max())
    theirs = float((reference.double() - exact).abs().max())
    assert ours <= 2 * theirs + 1e-7
    assert float((batched - reference).abs().max()) < 1e-5


def test_iter_video_hands_out_frame_zero_then_each_group(vae32: Any) -> None:
    parts = list(VaeDecoder(vae32).iter_video(_latents(torch.float32), [1, 3]))
    assert [p.shape[2] for p in parts] == [1, 4, 12]
    assert all(float(p.abs().max()) <= 1.0 for p in parts)


@pytest.mark.parametrize("groups", [[7], [9], [0, 8], [4, -1, 5]])
def test_groups_must_partition_the_frames_after_the_first(groups: list[int]) -> None:
    with pytest.raises(ValueError, match="sum to 8"):
        check_groups(9, groups)


def test_channels_last_decoder_equals_within_rounding(vae32: Any) -> None:
    vae = copy.deepcopy(vae32)
    z = _latents(torch.float32)
    expected = VaeDecoder(vae).video(z)
    decoder = VaeDecoder(vae, DecodeOptions(channels_last=True, cudnn_benchmark=False))
    conv = vae.decoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last_3d)
    assert float((decoder.video(z) - expected).abs().max()) < 1e-5


def test_compiled_decoder_equals_the_eager_one(vae32: Any) -> None:
    """Dynamo traces diffusers' decoder with its cache list (the "eager" backend: no code
    generation on the CPU; the GPU check times inductor's code)."""
    z = _latents(torch.float32)
    expected = VaeDecoder(vae32).video(z)
    options = DecodeOptions(compile=True, compile_backend="eager")
    assert torch.equal(VaeDecoder(vae32, options).video(z), expected)


class _Recording(ChunkDecoder):
    def __init__(self, inner: ChunkDecoder) -> None:
        super().__init__(inner.vae_decoder, inner.stats)
        self.seen: list[torch.Tensor] = []

    def video(self, latents: torch.Tensor) -> torch.Tensor:
        self.seen.append(latents.clone())
        return super().video(latents)


def test_streamer_frames_equal_the_group_by_group_frames(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    """The iterator progressive delivery uses: the stream's own partition gives its frames bit
    for bit; any other differs by float32 rounding only (at most one level in a few pixels)."""
    model = tiny_model("tiny")
    settings = PRESETS[Variant.DISTILLED].with_overrides(pyramid_steps=(1, 1, 1))
    request = StreamRequest("a fox", 64, 64, 1, settings)
    recording = _Recording(ChunkDecoder.for_vae(model.pipe.vae, model.device))
    streamer = ChunkStreamer(model, request, decoder=recording)
    frames = streamer.next_chunk().frames
    assert len(recording.seen) == 1  # the stream decoded through the decoder it was given

    def frames_of(groups: Sequence[int]) -> np.ndarray:
        parts: Iterator[torch.Tensor] = streamer.decoder.iter_uint8(recording.seen[0], groups)
        return np.concatenate([p.numpy() for p in parts])

    assert np.array_equal(frames_of([8]), frames)
    for groups in ([2, 2, 2, 2], [1] * 8):
        progressive = frames_of(groups).astype(np.int16)
        assert progressive.shape == frames.shape == (33, 64, 64, 3)
        differ = np.abs(progressive - frames)
        assert differ.max() <= 1
        assert (differ > 0).mean() < 0.01
