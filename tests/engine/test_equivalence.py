"""The stream's frames equal diffusers' pipelines for the same checkpoint, seed and settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.types import Variant
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest, trimmed_frame_count

TOLERANCE = 1e-4
SEQ = 16  # the tiny text encoder's context


def pipeline_frames(model: LoadedModel, chunks: int, seed: int, **kwargs: Any) -> np.ndarray:
    out = model.pipe(
        num_frames=33 * chunks,
        generator=torch.Generator("cpu").manual_seed(seed),
        max_sequence_length=SEQ,
        output_type="np",
        **kwargs,
    )
    return np.asarray(out.frames[0])


def stream_frames(model: LoadedModel, chunks: int, request: StreamRequest) -> np.ndarray:
    streamer = ChunkStreamer(model, request)
    frames = np.concatenate([streamer.next_chunk_float()[0] for _ in range(chunks)])
    return frames[: trimmed_frame_count(len(frames))]


def assert_equal_and_alive(expected: np.ndarray, actual: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert float(np.abs(expected - actual).max()) <= TOLERANCE
    assert float(actual.std()) > 1e-3, "a constant video would make equality meaningless"


def gradient_image(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


def test_base_t2v_with_cfg_equals_pipeline(tiny_model: Callable[[str], LoadedModel]) -> None:
    model = tiny_model("tiny-base")
    kw = {"prompt": "a cat bakes a cake", "negative_prompt": "blurry", "height": 64, "width": 64}
    expected = pipeline_frames(model, 2, seed=7, num_inference_steps=4, guidance_scale=5.0, **kw)
    settings = SamplingSettings(
        num_inference_steps=4, guidance_scale=5.0, negative_prompt="blurry", max_sequence_length=SEQ
    )
    actual = stream_frames(
        model, 2, StreamRequest(prompt=kw["prompt"], height=64, width=64, seed=7, settings=settings)
    )
    assert_equal_and_alive(expected, actual)


def test_mid_cfg_zero_star_equals_pipeline(tiny_model: Callable[[str], LoadedModel]) -> None:
    model = tiny_model("tiny-mid")
    assert model.pipe.config.is_cfg_zero_star
    expected = pipeline_frames(
        model,
        2,
        seed=3,
        prompt="waves at sunset",
        height=128,
        width=128,
        pyramid_num_inference_steps_list=[2, 2, 2],
        guidance_scale=5.0,
        use_zero_init=True,
        zero_steps=1,
    )
    settings = PRESETS[Variant.MID].with_overrides(pyramid_steps=(2, 2, 2), max_sequence_length=SEQ)
    assert settings.use_cfg_zero_star
    actual = stream_frames(
        model,
        2,
        StreamRequest(prompt="waves at sunset", height=128, width=128, seed=3, settings=settings),
    )
    assert_equal_and_alive(expected, actual)


@pytest.mark.parametrize("steps", [(1, 1, 1), (2, 2, 2)])
def test_distilled_with_amplify_equals_pipeline(
    tiny_model: Callable[[str], LoadedModel], steps: tuple[int, int, int]
) -> None:
    model = tiny_model("tiny")
    expected = pipeline_frames(
        model,
        2,
        seed=11,
        prompt="a red fox in snow",
        height=64,
        width=128,
        pyramid_num_inference_steps_list=list(steps),
        guidance_scale=1.0,
        is_amplify_first_chunk=True,
    )
    settings = PRESETS[Variant.DISTILLED].with_overrides(
        pyramid_steps=steps, max_sequence_length=SEQ
    )
    assert settings.amplify_first_chunk
    actual = stream_frames(
        model,
        2,
        StreamRequest(prompt="a red fox in snow", height=64, width=128, seed=11, settings=settings),
    )
    assert_equal_and_alive(expected, actual)


def random_video(frames: int = 70, size: int = 64) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        for _ in range(frames)
    ]


@pytest.mark.parametrize(
    ("field", "make_input"),
    [
        ("image", lambda: gradient_image(96, 80)),  # resized by the pipeline's preprocessing
        ("video", random_video),  # 70 frames: two whole 33-frame windows from the end
    ],
    ids=["i2v", "v2v"],
)
def test_conditioned_stream_equals_pipeline(
    tiny_model: Callable[[str], LoadedModel], field: str, make_input: Callable[[], object]
) -> None:
    model = tiny_model("tiny")
    condition = {field: make_input()}
    expected = pipeline_frames(
        model,
        2,
        seed=5,
        prompt="an astronaut",
        height=64,
        width=64,
        pyramid_num_inference_steps_list=[1, 1, 1],
        guidance_scale=1.0,
        is_amplify_first_chunk=True,
        **condition,
    )
    settings = PRESETS[Variant.DISTILLED].with_overrides(
        pyramid_steps=(1, 1, 1), max_sequence_length=SEQ
    )
    request = StreamRequest(
        prompt="an astronaut", height=64, width=64, seed=5, settings=settings, **condition
    )
    assert_equal_and_alive(expected, stream_frames(model, 2, request))


def test_different_seed_gives_different_frames(tiny_model: Callable[[str], LoadedModel]) -> None:
    model = tiny_model("tiny")
    settings = PRESETS[Variant.DISTILLED].with_overrides(
        pyramid_steps=(1, 1, 1), max_sequence_length=SEQ
    )
    a = stream_frames(
        model, 1, StreamRequest(prompt="x", height=64, width=64, seed=1, settings=settings)
    )
    b = stream_frames(
        model, 1, StreamRequest(prompt="x", height=64, width=64, seed=2, settings=settings)
    )
    assert float(np.abs(a - b).max()) > 1e-3
