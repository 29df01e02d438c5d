"""The paced test engine: frame codes that survive real codecs, cancellation, checkpoints."""

from __future__ import annotations

import asyncio
import io

import av
import numpy as np
import pytest

from helios_serve.core import framecode
from helios_serve.core.framecode import FrameCode, prompt_tag
from helios_serve.core.protocols import Priority
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import FRAMES_PER_CHUNK, StepProgress
from helios_serve.engine.paced import (
    PacedEngine,
    PacedStateError,
    PacedTiming,
    parse_engine_spec,
)
from helios_serve.errors import InvalidInputError, StreamCancelledError

FAST = PacedTiming(chunk_s=0.03, steps=3, open_s=0.0)


def request(prompt: str = "a fox", seed: int = 1) -> StreamRequest:
    return StreamRequest(prompt=prompt, width=192, height=128, seed=seed)


def test_frame_codes_round_trip_and_reject_what_is_not_one() -> None:
    frame = np.full((128, 192, 3), 90, dtype=np.uint8)
    for code in (FrameCode(0, 0, 0), FrameCode(4095, 63, 1023), FrameCode(17, 32, 555)):
        framecode.paint(frame, code)
        assert framecode.read(frame) == code
        assert framecode.read(frame.mean(axis=2)) == code  # luma alone is enough
    assert framecode.read(np.zeros((128, 192, 3), np.uint8)) is None  # the black placeholder
    noise = np.random.default_rng(0).integers(0, 256, (128, 192, 3), dtype=np.uint8)
    assert framecode.read(noise) is None
    flipped = frame.copy()
    flipped[:16, 16 * 6 : 16 * 7] = 255 - flipped[:16, 16 * 6 : 16 * 7]  # one bit: bad checksum
    assert framecode.read(flipped) is None
    with pytest.raises(ValueError, match="too small"):
        framecode.paint(np.zeros((8, 24, 3), np.uint8), FrameCode(0, 0, 0))


@pytest.mark.parametrize("codec", ["libvpx", "libx264"])
def test_frame_codes_survive_a_lossy_codec(codec: str) -> None:
    engine = PacedEngine(FAST)

    async def frames() -> np.ndarray:
        stream = await engine.open_stream(request(), Priority.SESSION)
        return (await stream.next_chunk()).frames

    made = asyncio.run(frames())
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm" if codec == "libvpx" else "mp4") as out:
        video = out.add_stream(codec, rate=24)
        video.width, video.height, video.pix_fmt = 192, 128, "yuv420p"
        video.bit_rate = 300_000
        for rgb in made:
            out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(video.encode())
    buf.seek(0)
    with av.open(buf) as container:
        decoded = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    assert len(decoded) == FRAMES_PER_CHUNK
    codes = [framecode.read(f) for f in decoded]
    assert codes == [FrameCode(0, i, prompt_tag("a fox")) for i in range(FRAMES_PER_CHUNK)]


def test_chunks_say_their_index_prompt_and_continue_from_a_checkpoint() -> None:
    async def main() -> None:
        engine = PacedEngine(FAST)
        stream = await engine.open_stream(request(), Priority.SESSION)
        steps: list[StepProgress] = []
        first = await stream.next_chunk(steps.append, checkpoint=True)
        assert [s.step for s in steps] == [1, 2, 3]
        await stream.set_prompt("a hare")
        second = await stream.next_chunk()
        assert framecode.read(first.frames[5]) == FrameCode(0, 5, prompt_tag("a fox"))
        assert framecode.read(second.frames[0]) == FrameCode(1, 0, prompt_tag("a hare"))
        assert (second.index, second.prompt) == (1, "a hare")
        # Reopened from the state after chunk 0 with the same change: the same frames.
        again = await engine.open_stream(request(), Priority.SESSION, resume=first.checkpoint)
        assert again.chunk_index == 1
        await again.set_prompt("a hare")
        assert np.array_equal((await again.next_chunk()).frames, second.frames)
        # Without the change it continues the first prompt.
        plain = await engine.open_stream(request(), Priority.SESSION, resume=first.checkpoint)
        assert framecode.read((await plain.next_chunk()).frames[0]) == FrameCode(
            1, 0, prompt_tag("a fox")
        )

    asyncio.run(main())


def test_cancellation_is_checked_before_each_step() -> None:
    async def main() -> None:
        engine = PacedEngine(FAST)
        stream = await engine.open_stream(request(), Priority.SESSION)
        steps: list[StepProgress] = []
        with pytest.raises(StreamCancelledError):
            await stream.next_chunk(steps.append, should_cancel=lambda: len(steps) >= 2)
        assert len(steps) == 2  # abandoned at the step after the request, not at the end
        assert stream.chunk_index == 0

    asyncio.run(main())


def test_bad_specs_sizes_and_states_are_clear_errors() -> None:
    assert parse_engine_spec("paced:1.1") == PacedTiming(1.1)
    assert parse_engine_spec("paced:1.1,decode=0.45") == PacedTiming(1.1, decode_share=0.45)
    bad_specs = ("paced:", "paced:0", "paced:-1", "paced:nan", "paced:inf", "fast:1", "paced:1e9",
                 "paced:1,decode=1", "paced:1,decode=0", "paced:1,decode=x", "paced:1,steps=2",
                 "paced:1,decode=nan")  # fmt: skip
    for bad in bad_specs:
        with pytest.raises(InvalidInputError):
            parse_engine_spec(bad)

    async def main() -> None:
        engine = PacedEngine(FAST)
        with pytest.raises(InvalidInputError, match="too small"):
            await engine.open_stream(StreamRequest("x", 16, 16), Priority.SESSION)
        for state in (b"junk", b'{"format": "other"}', b"[]"):
            with pytest.raises(PacedStateError):
                await engine.open_stream(request(), Priority.SESSION, resume=state)
        stream = await engine.open_stream(request(), Priority.SESSION)
        saved = (await stream.next_chunk(checkpoint=True)).checkpoint
        other = StreamRequest("x", width=256, height=128)
        with pytest.raises(PacedStateError, match="192x128"):
            await engine.open_stream(other, Priority.SESSION, resume=saved)

    asyncio.run(main())
