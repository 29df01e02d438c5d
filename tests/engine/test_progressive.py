"""Progressive delivery on the tiny model: a chunk's frames come group by group as the VAE
decodes them (latent frame 0 alone, then a session stream's groups of latent frames), in
process and across the engine process's pipe, and they are the very bytes the same chunk has
when it is asked for whole."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from helios_serve.core.protocols import Priority
from helios_serve.core.settings import PRESETS
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import DecodedFrames
from helios_serve.engine.child import ChildSpec
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.process import ProcessEngine
from helios_serve.engine.service import LocalEngine, describe
from helios_serve.engine.streamer import SESSION_DECODE_GROUPS, ChunkStreamer
from helios_serve.errors import StreamCancelledError

SIZES = [1] + [4 * g for g in SESSION_DECODE_GROUPS]
"""Video frames per group: latent frame 0 alone, then 4 per latent frame."""
STARTS = [sum(SIZES[:i]) for i in range(len(SIZES))]


def request(model: LoadedModel) -> StreamRequest:
    settings = PRESETS[model.variant].with_overrides(
        pyramid_steps=(1, 1, 1), max_sequence_length=16
    )
    return StreamRequest("a fox in the snow", 64, 64, seed=3, settings=settings)


def test_each_group_is_handed_over_before_the_next_is_decoded(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    model = tiny_model("tiny")
    streamer = ChunkStreamer(model, request(model), decode_groups=SESSION_DECODE_GROUPS)
    calls = [0]
    hook = model.pipe.vae.decoder.register_forward_hook(
        lambda *_: calls.__setitem__(0, calls[0] + 1)
    )
    seen: list[tuple[int, int]] = []  # (first frame of the group, decoder calls so far)
    try:
        streamer.next_chunk(on_frames=lambda d: seen.append((d.start, calls[0])))
        assert seen == [(start, i + 1) for i, start in enumerate(STARTS)]
        decoded = calls[0]
        # a cancel seen after a group stops the decode there
        with pytest.raises(StreamCancelledError):
            streamer.next_chunk(
                should_cancel=lambda: calls[0] >= decoded + 2,
                on_frames=lambda d: seen.append((d.start, 0)),
            )
        assert len(seen) == len(STARTS) + 2  # two groups of the second chunk, no more
    finally:
        hook.remove()


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_progressive_and_whole_chunk_delivery_give_byte_identical_frames(
    tiny_model: Callable[[str], LoadedModel], data_dir: Path, isolation: str
) -> None:
    model = tiny_model("tiny")
    engine: LocalEngine | ProcessEngine
    if isolation == "thread":
        engine = LocalEngine(model, describe(model, "helios"))
    else:  # the frames cross the engine process's pipe group by group
        engine = ProcessEngine(ChildSpec("tiny", data_dir, "helios", device="cpu"))
        engine.launch()
    loop_thread: list[bool] = []

    async def main() -> None:
        if isinstance(engine, ProcessEngine):
            await engine.start()
        loop = asyncio.get_running_loop()
        whole = await engine.open_stream(request(model), Priority.SESSION)
        progressive = await engine.open_stream(request(model), Priority.SESSION)
        groups: list[DecodedFrames] = []

        def take(d: DecodedFrames) -> None:
            loop_thread.append(asyncio.get_running_loop() is loop)
            groups.append(d)

        expected = (await whole.next_chunk()).frames
        got = await progressive.next_chunk(on_frames=take)
        sizes = [(g.start, len(g.frames)) for g in groups]
        assert sizes == list(zip(STARTS, SIZES, strict=True))
        assert {g.chunk_index for g in groups} == {got.index}
        assert np.array_equal(np.concatenate([g.frames for g in groups]), expected)
        assert np.array_equal(got.frames, expected)
        assert float(expected.std()) > 1.0  # frames with content, not a blank

    try:
        asyncio.run(main())
    finally:
        asyncio.run(engine.close())
    assert loop_thread
    assert all(loop_thread)  # handed over on the caller's event loop
