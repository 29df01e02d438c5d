"""Stream behaviour beyond equivalence: prompts, anchors, seeds, cancel, progress, memory."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from helios_serve.core.settings import PRESETS
from helios_serve.core.types import StepProgress, Variant
from helios_serve.engine.conditioning import PromptBlend
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest, quantize_uint8, to_uint8
from helios_serve.errors import InvalidInputError, StreamCancelledError

FAST = PRESETS[Variant.DISTILLED].with_overrides(pyramid_steps=(1, 1, 1), max_sequence_length=16)


def make(model: LoadedModel, prompt: str = "a cat", seed: int = 0) -> ChunkStreamer:
    return ChunkStreamer(
        model, StreamRequest(prompt=prompt, height=64, width=64, seed=seed, settings=FAST)
    )


def test_prompt_switch_applies_from_next_chunk(tiny_model: Callable[[str], LoadedModel]) -> None:
    model = tiny_model("tiny")
    plain, switched = make(model), make(model)
    same = [plain.next_chunk().frames for _ in range(2)]
    before = [switched.next_chunk().frames for _ in range(2)]
    switched.set_prompt("waves crash on a rocky shore")
    assert switched.prompt == "waves crash on a rocky shore"
    np.testing.assert_array_equal(same[1], before[1])
    after = switched.next_chunk()
    assert after.prompt == "waves crash on a rocky shore"
    assert not np.array_equal(plain.next_chunk().frames, after.frames)


def test_prompt_blend_weights_ramp_linearly() -> None:
    old, new = torch.zeros(1, 2, 4), torch.ones(1, 2, 4)
    blend = PromptBlend("old", old)
    blend.switch("new", new, chunks=3)
    means = [float(blend.next_chunk_embeds().mean()) for _ in range(4)]
    assert means == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])


def test_blended_switch_differs_from_hard_switch(tiny_model: Callable[[str], LoadedModel]) -> None:
    model = tiny_model("tiny")
    hard, soft = make(model), make(model)
    for s in (hard, soft):
        s.next_chunk()
    hard.set_prompt("a dog")
    soft.set_prompt("a dog", blend_chunks=3)
    assert not np.array_equal(hard.next_chunk().frames, soft.next_chunk().frames)


def test_same_seed_reproduces_and_set_seed_changes(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    model = tiny_model("tiny")
    a, b = make(model, seed=4), make(model, seed=4)
    np.testing.assert_array_equal(a.next_chunk().frames, b.next_chunk().frames)
    b.set_seed(99)
    assert b.seed == 99
    assert not np.array_equal(a.next_chunk().frames, b.next_chunk().frames)


def test_set_image_reanchors_and_clear_image(tiny_model: Callable[[str], LoadedModel]) -> None:
    model = tiny_model("tiny")
    a, b = make(model), make(model)
    a.next_chunk()
    b.next_chunk()
    image = np.full((64, 64, 3), 200, dtype=np.uint8)
    b.set_image(image)
    assert not np.array_equal(a.next_chunk().frames, b.next_chunk().frames)
    b.clear_image()
    assert b.next_chunk().frames.shape == (33, 64, 64, 3)


def test_progress_reports_every_step(tiny_model: Callable[[str], LoadedModel]) -> None:
    streamer = make(tiny_model("tiny"))
    seen: list[StepProgress] = []
    streamer.next_chunk(on_progress=seen.append)
    assert [p.step for p in seen] == list(range(1, 7))  # [1,1,1] amplified: 6 steps
    assert {p.steps_in_chunk for p in seen} == {6} == {streamer.steps_in_chunk(0)}
    seen.clear()
    streamer.next_chunk(on_progress=seen.append)
    assert len(seen) == 3 == streamer.steps_in_chunk()


def test_cancel_between_chunks_and_mid_chunk(tiny_model: Callable[[str], LoadedModel]) -> None:
    streamer = make(tiny_model("tiny"))
    with pytest.raises(StreamCancelledError):
        streamer.next_chunk(should_cancel=lambda: True)
    calls = iter([False, False, True])
    with pytest.raises(StreamCancelledError):
        streamer.next_chunk(should_cancel=lambda: next(calls, True))
    assert streamer.chunk_index == 0


def test_state_is_bounded_over_many_chunks(tiny_model: Callable[[str], LoadedModel]) -> None:
    streamer = make(tiny_model("tiny"))

    def held_bytes() -> int:
        tensors = [v for v in vars(streamer).values() if isinstance(v, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)

    streamer.next_chunk()
    after_one = held_bytes()
    for _ in range(5):
        streamer.next_chunk()
    assert held_bytes() == after_one
    assert streamer._history.shape[2] == 19


@pytest.mark.parametrize(("height", "width"), [(100, 64), (96, 160), (0, 64)])
def test_bad_sizes_are_refused(
    tiny_model: Callable[[str], LoadedModel], height: int, width: int
) -> None:
    with pytest.raises(InvalidInputError, match="multiple"):
        ChunkStreamer(
            tiny_model("tiny"), StreamRequest(prompt="x", height=height, width=width, settings=FAST)
        )


def test_a_short_v2v_clip_is_its_first_frame_repeated_in_front(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    """vLLM-Omni takes 2- and 3-frame V2V clips: the stream pads one to a whole 33-frame window
    with its first frame, so it conditions exactly as that padded clip does."""
    rng = np.random.default_rng(5)
    clip = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    padded = np.concatenate([np.repeat(clip[:1], 30, axis=0), clip])

    def first_chunk(video: np.ndarray) -> np.ndarray:
        request = StreamRequest(prompt="x", height=64, width=64, settings=FAST, video=video)
        return ChunkStreamer(tiny_model("tiny"), request).next_chunk().frames

    np.testing.assert_array_equal(first_chunk(clip), first_chunk(padded))
    with pytest.raises(InvalidInputError, match="at least one frame"):
        first_chunk(clip[:0])


def test_frames_are_the_float_frames_rounded(tiny_model: Callable[[str], LoadedModel]) -> None:
    """uint8 frames come from the device-side quantisation, bit for bit the host rounding."""
    model = tiny_model("tiny")
    a, b = make(model, seed=5), make(model, seed=5)
    for _ in range(2):
        frames = a.next_chunk().frames
        assert frames.dtype == np.uint8
        assert frames.flags.c_contiguous
        np.testing.assert_array_equal(frames, to_uint8(b.next_chunk_float()[0]))


def test_quantize_uint8_matches_to_uint8_on_edges() -> None:
    values = np.array([0.0, 0.5 / 255, 1.5 / 255, 0.5, 254.5 / 255, 1.0, -0.1, 1.1], np.float32)
    values = np.concatenate([values, np.random.default_rng(0).random(10_000, np.float32)])
    np.testing.assert_array_equal(
        quantize_uint8(torch.from_numpy(values)).numpy(), to_uint8(values)
    )


def test_prefetch_gives_the_same_chunks(tiny_model: Callable[[str], LoadedModel]) -> None:
    model = tiny_model("tiny")
    plain, ahead = make(model, seed=2), make(model, seed=2)
    seen: list[StepProgress] = []
    for i in range(3):
        expected = plain.next_chunk()
        got = ahead.next_chunk(on_progress=seen.append, prefetch=i < 2)
        assert got.index == expected.index == i
        np.testing.assert_array_equal(got.frames, expected.frames)
        assert ahead.chunks_ahead == (1 if i < 2 else 0)
    assert ahead.chunk_index == plain.chunk_index == 3
    assert [p.chunk_index for p in seen] == [0] * 6 + [1] * 3 + [2] * 3


def test_changes_after_a_prefetch_apply_after_the_prefetched_chunk(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    model = tiny_model("tiny")
    plain, ahead = make(model), make(model)
    plain.next_chunk()
    ahead.next_chunk(prefetch=True)
    with pytest.raises(RuntimeError, match="prefetch"):
        ahead.next_chunk_float()
    ahead.set_prompt("waves crash on a rocky shore")
    second = ahead.next_chunk()
    assert second.prompt == "a cat"
    np.testing.assert_array_equal(second.frames, plain.next_chunk().frames)
    assert ahead.next_chunk().prompt == "waves crash on a rocky shore"
