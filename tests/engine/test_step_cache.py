"""Step caching (cache-dit DBCache) on the tiny Base and Mid models, through the real streamer.

Block calls are counted with forward hooks on the transformer's own blocks, independently of
what cache-dit reports. Denoised latents are compared (the VAE decode after them is a fixed
function of the latents), which keeps these tests quick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.step_cache import StepCacheSettings
from helios_serve.core.types import Variant
from helios_serve.engine.guidance import SequentialPasses
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.state import StreamState
from helios_serve.engine.step_cache import ChunkStepCache, stream_step_cache
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest
from helios_serve.errors import InvalidInputError

SEQ = 16
ALWAYS = StepCacheSettings(residual_diff_threshold=1.0, max_warmup_steps=2)
"""Threshold 1.0: cache-dit calls every step similar, so the schedule depends on the warm-up
and the streak limit only (not on the random weights): compute 0, 1; cache 2, 3, 4; compute 5;
cache 6, 7 ... per stage and per guidance branch."""


def _base(step_cache: StepCacheSettings | None, steps: int = 6) -> StreamRequest:
    settings = SamplingSettings(
        num_inference_steps=steps,
        guidance_scale=5.0,
        negative_prompt="blurry",
        max_sequence_length=SEQ,
        step_cache=step_cache,
    )
    return StreamRequest(prompt="a cat bakes", height=64, width=64, seed=4, settings=settings)


def _mid(step_cache: StepCacheSettings | None, steps: int = 3) -> StreamRequest:
    settings = PRESETS[Variant.MID].with_overrides(
        pyramid_steps=(steps,) * 3, max_sequence_length=SEQ, step_cache=step_cache
    )
    return StreamRequest(prompt="waves", height=64, width=64, seed=6, settings=settings)


@contextmanager
def counted_blocks(model: LoadedModel) -> Iterator[list[int]]:
    """Forward calls of each transformer block while the block runs."""
    counts = [0] * len(model.pipe.transformer.blocks)
    hooks = [
        block.register_forward_pre_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
        for i, block in enumerate(model.pipe.transformer.blocks)
    ]
    try:
        yield counts
    finally:
        for hook in hooks:
            hook.remove()


def denoise(streamer: ChunkStreamer) -> tuple[torch.Tensor, StreamState, dict[str, float]]:
    chunk = streamer._denoise_next(None, None)
    return chunk.latents, chunk.state, chunk.extras


@pytest.mark.parametrize(
    ("name", "request_of", "calls", "cached"),
    [
        # 6 steps x (cond, uncond); cached per branch: steps 2, 3, 4 (then the streak limit)
        ("tiny-base", _base, 12, 6),
        # 3 stages x 3 steps x 2 branches; cached per stage and branch: step 2
        ("tiny-mid", _mid, 18, 6),
    ],
)
def test_caching_skips_the_block_calls_it_claims(
    tiny_model: Callable[[str], LoadedModel],
    name: str,
    request_of: Callable[[StepCacheSettings | None], StreamRequest],
    calls: int,
    cached: int,
) -> None:
    model = tiny_model(name)
    streamer = ChunkStreamer(model, request_of(ALWAYS))
    with counted_blocks(model) as counts:
        _, _, extras = denoise(streamer)
    assert extras["step_cache_calls"] == calls
    assert extras["step_cache_cached_calls"] == cached
    # F1B0 on 2 blocks: block 0 runs on every call, block 1 only on the uncached ones
    assert counts == [calls, calls - cached]
    assert extras["step_cache_skipped_blocks"] == cached
    assert not getattr(model.pipe.transformer, "_is_cached", False)  # hooks gone after the chunk


def test_batched_guidance_shares_one_decision_per_step(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    model = replace(tiny_model("tiny-base"), guidance="batched")
    with counted_blocks(model) as counts:
        _, _, extras = denoise(ChunkStreamer(model, _base(ALWAYS)))
    assert (extras["step_cache_calls"], extras["step_cache_cached_calls"]) == (6, 3)
    assert counts == [6, 3]


def test_a_measured_threshold_caches_and_counts_agree(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    model = tiny_model("tiny-base")
    loose = StepCacheSettings(residual_diff_threshold=0.5, max_warmup_steps=1)
    with counted_blocks(model) as counts:
        _, _, extras = denoise(ChunkStreamer(model, _base(loose)))
    assert extras["step_cache_cached_calls"] > 0
    assert counts == [12, 12 - extras["step_cache_cached_calls"]]


def test_caching_off_is_bit_equal_and_hooks_leave_no_trace(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    model = tiny_model("tiny-base")
    plain, _, extras = denoise(ChunkStreamer(model, _base(None, 4)))
    assert extras == {}
    cached, _, _ = denoise(ChunkStreamer(model, _base(ALWAYS, 4)))
    assert not torch.equal(cached, plain)  # caching changed something...
    again, _, _ = denoise(ChunkStreamer(model, _base(None, 4)))
    assert torch.equal(again, plain)  # ...and left the transformer as it was
    # cache-dit's wrapped forward, computing every step, is the plain computation bit for bit
    never = StepCacheSettings(residual_diff_threshold=0.0)
    computed, _, extras = denoise(ChunkStreamer(model, _base(never, 4)))
    assert extras["step_cache_cached_calls"] == 0
    assert torch.equal(computed, plain)


@pytest.mark.parametrize(("name", "request_of"), [("tiny-base", _base), ("tiny-mid", _mid)])
def test_resume_under_caching_is_byte_identical(
    tiny_model: Callable[[str], LoadedModel],
    name: str,
    request_of: Callable[[StepCacheSettings | None, int], StreamRequest],
) -> None:
    model = tiny_model(name)
    request = request_of(ALWAYS, 3 if name == "tiny-mid" else 4)
    whole = ChunkStreamer(model, request)
    _, after_first, _ = denoise(whole)
    second, after_second, extras = denoise(whole)
    assert extras["step_cache_cached_calls"] > 0
    saved = after_first.to_bytes()
    resumed = ChunkStreamer(model, request, state=StreamState.from_bytes(saved))
    again, after_again, _ = denoise(resumed)
    assert torch.equal(again, second)
    assert after_again.to_bytes() == after_second.to_bytes()


def test_streams_taking_turns_on_one_transformer_keep_their_own_results(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    """A job and a session share the engine: chunks of a cached and an uncached stream
    interleave on one transformer, each equal to the stream run alone."""
    model = tiny_model("tiny-base")

    def two_chunks(request: StreamRequest) -> list[torch.Tensor]:
        streamer = ChunkStreamer(model, request)
        return [denoise(streamer)[0] for _ in range(2)]

    alone_cached, alone_plain = two_chunks(_base(ALWAYS, 3)), two_chunks(_base(None, 3))
    cached, plain = ChunkStreamer(model, _base(ALWAYS, 3)), ChunkStreamer(model, _base(None, 3))
    for i in range(2):
        assert torch.equal(denoise(cached)[0], alone_cached[i])
        assert torch.equal(denoise(plain)[0], alone_plain[i])


def test_distilled_and_oversized_settings_are_refused(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    transformer = tiny_model("tiny-base").pipe.transformer
    settings = PRESETS[Variant.DISTILLED].with_overrides(step_cache=StepCacheSettings())
    with pytest.raises(InvalidInputError, match="Distilled") as refused:
        stream_step_cache(transformer, settings, Variant.DISTILLED, SequentialPasses())
    assert refused.value.param == "step_cache"
    assert (
        stream_step_cache(transformer, SamplingSettings(), Variant.BASE, SequentialPasses()) is None
    )
    with pytest.raises(InvalidInputError, match="has 2"):
        ChunkStepCache(
            transformer,
            StepCacheSettings(Fn_compute_blocks=2, Bn_compute_blocks=1),
            separate_cfg=True,
        )


def test_the_server_flags_reach_the_model_description(
    tiny_model: Callable[[str], LoadedModel],
) -> None:
    import pickle

    from helios_serve.cli import build_parser
    from helios_serve.engine.child import ChildSpec
    from helios_serve.engine.service import describe

    args = build_parser().parse_args(
        ["serve", "--step-cache", '{"max_cached_steps": 9}', "--guidance-passes", "batched"]
    )
    assert args.step_cache == StepCacheSettings(max_cached_steps=9)
    assert args.guidance_passes == "batched"
    spec = ChildSpec("tiny-base", Path("."), "m", guidance="batched", step_cache=args.step_cache)
    assert pickle.loads(pickle.dumps(spec)) == spec  # crosses into the engine process
    loaded = replace(tiny_model("tiny-base"), step_cache_default=args.step_cache)
    info = describe(loaded, "m")
    assert info.step_cache_available
    assert info.step_cache_default == StepCacheSettings(max_cached_steps=9)
