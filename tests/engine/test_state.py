"""A stream's saved state continues it exactly: resume, extension, fades, I2V, bad states."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from helios_serve.core.settings import PRESETS
from helios_serve.core.types import Variant
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.state import CorruptStateError, StateMismatchError, StreamState
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest

FAST = PRESETS[Variant.DISTILLED].with_overrides(pyramid_steps=(1, 1, 1), max_sequence_length=16)


def request(prompt: str = "a cat", seed: int = 3, **kw: object) -> StreamRequest:
    fields: dict[str, object] = {"height": 64, "width": 64, "seed": seed, "settings": FAST}
    fields.update(kw)
    return StreamRequest(prompt=prompt, **fields)  # type: ignore[arg-type]


def resumed(model: LoadedModel, saved: bytes | None, req: StreamRequest) -> ChunkStreamer:
    assert saved is not None
    return ChunkStreamer(model, req, state=StreamState.from_bytes(saved))


@pytest.mark.parametrize("prefetch", [False, True])
def test_resume_from_a_checkpoint_makes_the_same_chunks(
    tiny_model: Callable[[str], LoadedModel], prefetch: bool
) -> None:
    model = tiny_model("tiny")
    whole = ChunkStreamer(model, request())
    expected = [whole.next_chunk().frames for _ in range(4)]
    first = ChunkStreamer(model, request())
    results = [first.next_chunk(checkpoint=True, prefetch=prefetch) for _ in range(2)]
    assert results[1].index == 1
    again = resumed(model, results[1].checkpoint, request())
    assert again.chunk_index == 2
    rest = [again.next_chunk() for _ in range(2)]
    assert [r.index for r in rest] == [2, 3]
    for got, want in zip([*results, *rest], expected, strict=True):
        np.testing.assert_array_equal(got.frames, want)


def test_extension_equals_a_stream_whose_prompt_changed_there(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    model = tiny_model("tiny")
    switched = ChunkStreamer(model, request())
    switched.next_chunk()
    switched.next_chunk()
    switched.set_prompt("waves crash on a rocky shore")
    expected = [switched.next_chunk().frames for _ in range(2)]
    original = ChunkStreamer(model, request())
    original.next_chunk()
    saved = original.next_chunk(checkpoint=True).checkpoint
    extension = resumed(model, saved, request())
    extension.set_prompt("waves crash on a rocky shore")
    got = [extension.next_chunk() for _ in range(2)]
    assert got[0].prompt == "waves crash on a rocky shore"
    for chunk, want in zip(got, expected, strict=True):
        np.testing.assert_array_equal(chunk.frames, want)
    assert not np.array_equal(got[0].frames, original.next_chunk().frames)


def test_a_fade_in_progress_and_an_image_anchor_survive(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    model = tiny_model("tiny")
    image = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    req = request(image=image)
    whole = ChunkStreamer(model, req)
    whole.next_chunk()
    whole.set_prompt("a dog", blend_chunks=3)
    expected = [whole.next_chunk().frames for _ in range(3)]
    first = ChunkStreamer(model, req)
    first.next_chunk()
    first.set_prompt("a dog", blend_chunks=3)
    saved = first.next_chunk(checkpoint=True)
    np.testing.assert_array_equal(saved.frames, expected[0])
    state = StreamState.from_bytes(saved.checkpoint or b"")
    assert state.blend is not None
    assert state.anchor is not None
    again = ChunkStreamer(model, req, state=state)
    for want in expected[1:]:
        np.testing.assert_array_equal(again.next_chunk().frames, want)


def test_a_state_only_continues_the_same_stream(tiny_model: Callable[[str], LoadedModel]) -> None:
    model = tiny_model("tiny")
    saved = ChunkStreamer(model, request()).next_chunk(checkpoint=True).checkpoint
    assert saved is not None
    with pytest.raises(StateMismatchError, match="width"):
        resumed(model, saved, request(width=128))
    other = FAST.with_overrides(pyramid_steps=(2, 1, 1))
    with pytest.raises(StateMismatchError, match="pyramid_steps"):
        resumed(model, saved, request(settings=other))
    for bad in (b"", b"x" * 100, saved[: len(saved) // 2]):
        with pytest.raises(CorruptStateError):
            StreamState.from_bytes(bad)
