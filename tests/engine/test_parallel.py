"""One stream over several ranks, on CPU ranks (gloo) with the tiny checkpoints.

The engines here are the production path: a supervised engine process (rank 0) that starts
its other ranks. Their frames and saved states are compared with one process's.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from helios_serve.core.protocols import Priority
from helios_serve.core.settings import PRESETS
from helios_serve.core.types import ChunkResult, Variant
from helios_serve.engine.child import ChildSpec
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.parallel.context import (
    check_lengths,
    check_splittable,
    sequence_lengths,
    stream_lengths,
)
from helios_serve.engine.parallel.layout import ParallelLayout, layout_from_flags
from helios_serve.engine.process import ProcessEngine
from helios_serve.engine.state import StreamState
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest
from helios_serve.errors import InvalidInputError

BASE = PRESETS[Variant.BASE].with_overrides(num_inference_steps=2, max_sequence_length=16)
REQUEST = StreamRequest(prompt="a red kite", height=64, width=64, seed=5, settings=BASE)
CHUNKS = 2
RING_LATENT_TOLERANCE = 1e-4
"""Ring attention merges partial softmaxes by log-sum-exp: other roundings than one pass."""


def engine_for(data_dir: Path, model: str, layout: ParallelLayout | None) -> ProcessEngine:
    engine = ProcessEngine(ChildSpec(model, data_dir, "helios", device="cpu", layout=layout))
    engine.launch()
    return engine


async def chunks(
    engine: ProcessEngine, count: int, resume: bytes | None = None
) -> list[ChunkResult]:
    stream = await engine.open_stream(REQUEST, Priority.JOB, resume)
    try:
        return [await stream.next_chunk(prefetch=True, checkpoint=True) for _ in range(count)]
    finally:
        await stream.close()


def run_on(engine: ProcessEngine, count: int, resume: bytes | None = None) -> list[ChunkResult]:
    async def body() -> list[ChunkResult]:
        await engine.start()
        try:
            return await chunks(engine, count, resume)
        finally:
            await engine.close()

    return asyncio.run(body())


@pytest.fixture(scope="module")
def one_device(tiny_model: Callable[[str], LoadedModel]) -> list[ChunkResult]:
    stream = ChunkStreamer(tiny_model("tiny-base"), REQUEST)
    return [stream.next_chunk(checkpoint=True) for _ in range(CHUNKS)]


def test_ulysses_cfg_and_a_decode_rank_make_one_devices_frames_and_states(
    data_dir: Path, tiny_model: Callable[[str], LoadedModel], one_device: list[ChunkResult]
) -> None:
    # 5 ranks: CFG's two branches, each split Ulysses-2, and a rank that only decodes
    layout = layout_from_flags(None, "ulysses=2,cfg=2", "cpu", device="cpu")
    assert layout is not None
    assert layout.world_size == 5
    engine = engine_for(data_dir, "tiny-base", layout)
    # resume on the 5 ranks from one device's checkpoint, then a fresh stream
    resumed, *fresh = run_on_twice(engine, one_device[0].checkpoint)
    for got, want in zip(fresh, one_device, strict=True):
        assert np.array_equal(got.frames, want.frames)  # bit for bit
        assert got.checkpoint == want.checkpoint  # the same bytes under either layout
    assert resumed.index == 1
    assert np.array_equal(resumed.frames, one_device[1].frames)
    # and the other way: the parallel stream's state continues on one device
    assert fresh[0].checkpoint is not None
    state = StreamState.from_bytes(fresh[0].checkpoint)
    again = ChunkStreamer(tiny_model("tiny-base"), REQUEST, state=state).next_chunk()
    assert np.array_equal(again.frames, one_device[1].frames)


def run_on_twice(engine: ProcessEngine, resume: bytes | None) -> list[ChunkResult]:
    """One chunk resumed from `resume`, then CHUNKS fresh ones, on one engine start."""

    async def body() -> list[ChunkResult]:
        await engine.start()
        try:
            first = await chunks(engine, 1, resume)
            return first + await chunks(engine, CHUNKS)
        finally:
            await engine.close()

    return asyncio.run(body())


def test_ring_attention_stays_within_a_stated_tolerance(
    data_dir: Path, one_device: list[ChunkResult]
) -> None:
    layout = layout_from_flags(None, "ring=2", None, device="cpu")
    results = run_on(engine_for(data_dir, "tiny-base", layout), CHUNKS)
    for got, want in zip(results, one_device, strict=True):
        assert got.checkpoint is not None
        assert want.checkpoint is not None
        ring = StreamState.from_bytes(got.checkpoint).history
        exact = StreamState.from_bytes(want.checkpoint).history
        assert float((ring - exact).abs().max()) < RING_LATENT_TOLERANCE
        assert int(np.abs(got.frames.astype(int) - want.frames.astype(int)).max()) <= 1


def test_the_token_counts_we_split_are_the_transformers(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    transformer = tiny_model("tiny-base").pipe.transformer
    seen: list[int] = []
    handles = [
        transformer.blocks[0].attn1.register_forward_hook(
            lambda _m, args, _o: seen.append(args[0].shape[1])
        ),
        transformer.blocks[0].attn2.register_forward_hook(
            lambda _m, args, _o: seen.append(args[0].shape[1])
        ),
    ]
    patch = tuple(transformer.config.patch_size)
    try:
        for h, w in ((16, 24), (8, 8), (2, 4)):
            kwargs = tiny_inputs(h, w)
            with torch.no_grad():
                transformer(**kwargs)
            assert sequence_lengths(kwargs, patch) == (seen[-2], seen[-1])
    finally:
        for handle in handles:
            handle.remove()


def tiny_inputs(h: int, w: int) -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, 16, 9, h, w, generator=g),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 16, 32, generator=g),
        "indices_hidden_states": torch.arange(20, 29)[None],
        "indices_latents_history_short": torch.tensor([[0, 19]]),
        "indices_latents_history_mid": torch.tensor([[17, 18]]),
        "indices_latents_history_long": torch.arange(1, 17)[None],
        "latents_history_short": torch.randn(1, 16, 2, 16, 24, generator=g),
        "latents_history_mid": torch.randn(1, 16, 2, 16, 24, generator=g),
        "latents_history_long": torch.randn(1, 16, 16, 16, 24, generator=g),
        "return_dict": False,
    }


def test_a_size_the_cpu_ranks_cannot_split_is_refused_before_any_rank_starts() -> None:
    # the 14B at its trained size (bench/arch.py's counts): 8 ranks need uneven shards at stage 0
    assert stream_lengths(384, 640, 3) == [(2940, 540), (4560, 2160), (11040, 8640)]
    layout = ParallelLayout(("cpu", "cpu"), ulysses=2)
    check_lengths(stream_lengths(128, 128, 3)[0], layout)
    with pytest.raises(InvalidInputError, match="gloo"):
        check_lengths(stream_lengths(64, 64, 3)[0], layout)  # checked when a stream opens
    patch = (1, 2, 2)
    check_splittable(tiny_inputs(16, 24), patch, layout)  # 216 + history: even
    with pytest.raises(InvalidInputError, match="gloo"):
        check_splittable(tiny_inputs(2, 2), patch, layout)  # 9 noisy tokens
    with pytest.raises(InvalidInputError, match="fewer"):
        check_splittable(tiny_inputs(2, 2), patch, ParallelLayout(("cpu",) * 16, ulysses=16))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("0,1", "ulysses=2", None), (("cuda:0", "cuda:1"), 2, 1, 1, None)),
        (("0,1,2", "ring=2", "2"), (("cuda:0", "cuda:1"), 1, 2, 1, "cuda:2")),
        (("0,1", None, "1"), (("cuda:0",), 1, 1, 1, "cuda:1")),
        (("0,1", "cfg=2", "cuda:1"), (("cuda:0", "cuda:1"), 1, 1, 2, "cuda:1")),
        ((None, "ulysses=2,cfg=2", "cpu"), (("cpu",) * 4, 2, 1, 2, "cpu")),
    ],
)
def test_the_flags_name_one_layout(
    flags: tuple[str | None, str | None, str | None],
    expected: tuple[tuple[str, ...], int, int, int, str | None],
) -> None:
    layout = layout_from_flags(*flags, device="cpu" if flags[0] is None else None)
    assert layout is not None
    got = (layout.transformer_devices, layout.ulysses, layout.ring, layout.cfg)
    assert (*got, layout.decode_device) == expected
    assert pickle.loads(pickle.dumps(layout)) == layout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("0,1", "ulysses=4", None), "needs 4"),
        (("0,0", "ulysses=2", None), "distinct"),
        (("0,1", None, None), "say how"),
        ((None, "tensor=2", None), "expected NAME=N"),
        ((None, "cfg=3", None), "cfg at most 2"),
        ((None, None, "gpu7"), "not a device"),
    ],
)
def test_a_layout_that_cannot_run_is_refused_with_its_flag(
    flags: tuple[str | None, str | None, str | None], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        layout_from_flags(*flags)
