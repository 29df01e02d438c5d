"""The engine's transformer path (compact modulation, text K/V per prompt) equals diffusers'."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from helios_serve.engine import compact_dit
from helios_serve.engine.sampling import history_indices
from helios_serve.engine.tiny import _build_transformer

H, W = 8, 12


def _inputs(batch: int = 1, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(batch, *shape, generator=g)

    return {
        "hidden_states": randn(16, 9, H, W),
        "timestep": torch.full((batch,), 500),
        "latents_history_short": randn(16, 2, H, W),
        "latents_history_mid": randn(16, 2, H, W),
        "latents_history_long": randn(16, 16, H, W),
        "return_dict": False,
        **{k: v.expand(batch, -1) for k, v in history_indices(9, (16, 2, 1)).items()},
    }


@pytest.fixture(scope="module")
def models() -> tuple[Any, Any]:
    """(diffusers' own transformer, an identical copy with the engine path installed)."""
    torch.manual_seed(0)
    reference = _build_transformer()
    installed = copy.deepcopy(reference)
    compact_dit.install(installed)
    return reference, installed


def _run(model: Any, text: torch.Tensor, engaged: bool, **kw: Any) -> torch.Tensor:
    with torch.no_grad():
        if not engaged:
            return model(encoder_hidden_states=text, **kw)[0]  # type: ignore[no-any-return]
        with compact_dit.engaged(model):
            return model(encoder_hidden_states=text, **kw)[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("batch", [1, 2])
def test_engine_path_equals_diffusers_bit_for_bit(models: tuple[Any, Any], batch: int) -> None:
    reference, installed = models
    kw = _inputs(batch)
    text = torch.randn(batch, 16, 32, generator=torch.Generator().manual_seed(1))
    expected = _run(reference, text, False, **kw)
    assert torch.equal(_run(installed, text, True, **kw), expected)
    assert torch.equal(_run(installed, text, True, **kw), expected)  # from the prompt cache
    assert torch.equal(_run(installed, text, False, **kw), expected)  # not engaged: diffusers'
    assert float(expected.std()) > 1e-2


def test_blocks_get_two_modulation_rows_through_diffusers_call_signature(
    models: tuple[Any, Any],
) -> None:
    """Hooks on the blocks (step caches) see the usual positional call, with compact rows."""
    _, installed = models
    seen: list[tuple[int, tuple[int, ...], int]] = []

    def hook(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> None:
        seen.append((len(args), tuple(args[2].shape), args[0].shape[1]))

    handle = installed.blocks[0].register_forward_hook(hook)
    try:
        _run(installed, torch.randn(1, 16, 32), True, **_inputs())
        _run(installed, torch.randn(1, 16, 32), False, **_inputs())
    finally:
        handle.remove()
    tokens = seen[0][2]
    assert tokens > 9 * (H // 2) * (W // 2)  # noisy tokens and history in front
    assert seen == [(5, (1, 2, 6, 24), tokens), (5, (1, tokens, 6, 24), tokens)]


def test_text_key_values_are_computed_once_per_prompt_tensor() -> None:
    torch.manual_seed(0)
    model = _build_transformer()
    paths = compact_dit.install(model)
    assert compact_dit.install(model) is paths  # installing twice changes nothing
    kw = _inputs()
    prompt, negative = torch.randn(1, 16, 32), torch.randn(1, 16, 32)
    for _ in range(3):  # one chunk of [1,1,1] with CFG: the two prompts alternate
        _run(model, prompt, True, **kw)
        _run(model, negative, True, **kw)
    assert paths.text_encodings == 2
    before = _run(model, prompt, True, **kw)
    prompt.mul_(2.0)  # changed in place: its version moves on, the cache sees it
    after = _run(model, prompt, True, **kw)
    assert paths.text_encodings == 3
    assert not torch.equal(before, after)
    for _ in range(paths.capacity + 1):
        _run(model, torch.randn(1, 16, 32), True, **kw)
    assert len(paths._prompts) == paths.capacity
    processors = [block.attn2.processor for block in model.blocks]
    assert all(p.key is None and p.value is None for p in processors)  # unprimed after a call


def test_regional_compile_traces_each_path_once_for_all_blocks(models: tuple[Any, Any]) -> None:
    """fullgraph regional compile of the swapped blocks: one graph per path (not per block)."""
    from torch._dynamo.utils import counters

    reference, _ = models
    torch._dynamo.reset()
    counters.clear()
    model = copy.deepcopy(reference)
    compact_dit.install(model)
    model.compile_repeated_blocks(fullgraph=True, dynamic=False, backend="eager")
    kw, text = _inputs(), torch.randn(1, 16, 32)
    expected = _run(reference, text, False, **kw)
    for engaged in (True, True, False):
        assert torch.equal(_run(model, text, engaged, **kw), expected)
    assert counters["stats"]["unique_graphs"] == 2
    torch._dynamo.reset()
