"""The engine's path through diffusers' `HeliosTransformer3DModel`: same math, less traffic.

Two changes, both exact (the same operations on the same values; tested equal to diffusers):

- **Compact modulation.** diffusers builds `timestep_proj` as a `[B, S, 6, D]` tensor (one row
  per token: ~680 MB in bf16 at S = 11,040, D = 5,120) that every block reads, and each block adds
  it to its table in float32 (another `[B, S, 6, D]`). Only two distinct rows exist: the history
  tokens' (t = 0) and the noisy tokens'. Here the blocks get those two rows, `[B, 2, 6, D]`, and
  modulate the history and noisy token ranges apart.
- **Cross-attention text K/V per prompt.** The text embedder and every block's cross-attention
  keys and values depend on the prompt only; they are computed once per prompt embedding tensor
  (a small LRU keyed by the tensor's identity and version) instead of at every forward.

Installed on a loaded model by `install`, without patching diffusers' classes: each block's class
is swapped for a subclass (same name, so `compile_repeated_blocks` still finds it) whose forward
takes the compact rows or diffusers' per-token tensor, each cross-attention gets a processor that
uses primed K/V when given, and the model's `forward` runs this path only while `engaged` (the
streamer engages it; diffusers' pipelines calling the same modules get diffusers' own forward).
Blocks keep diffusers' call signature, so hooks on blocks (step caches) still see their calls.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from types import MethodType
from typing import Any

import torch

COMPACT_ROWS = 2
"""Modulation rows handed to the blocks: history tokens, then noisy tokens."""

_ATTRIBUTE = "_helios_compact_paths"


def is_compact(temb: torch.Tensor, hidden_states: torch.Tensor) -> bool:
    """Compact rows, not diffusers' per-token tensor (with 2 tokens both read the same)."""
    rows, tokens = temb.shape[1], hidden_states.shape[1]
    return bool(temb.ndim == 4 and rows == COMPACT_ROWS and tokens != COMPACT_ROWS)


def _split_cat(history: int, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return second if history == 0 else torch.cat([first, second], dim=1)


def _modulate(
    history: int, normed: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, like: torch.Tensor
) -> torch.Tensor:
    """`(normed * (1 + scale) + shift).type_as(like)` with one row of scale/shift per range."""
    h = history
    first = (normed[:, :h] * (1 + scale[:, 0:1]) + shift[:, 0:1]).type_as(like)
    second = (normed[:, h:] * (1 + scale[:, 1:2]) + shift[:, 1:2]).type_as(like)
    return _split_cat(h, first, second)


def _gated(
    history: int, residual: torch.Tensor, update: torch.Tensor, gate: torch.Tensor
) -> torch.Tensor:
    """`(residual.float() + update * gate).type_as(residual)` with one gate row per range."""
    h = history
    first = (residual[:, :h].float() + update[:, :h] * gate[:, 0:1]).type_as(residual)
    second = (residual[:, h:].float() + update[:, h:] * gate[:, 1:2]).type_as(residual)
    return _split_cat(h, first, second)


def compact_block_forward(
    block: Any,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    temb: torch.Tensor,
    rotary_emb: torch.Tensor,
    original_context_length: int,
) -> torch.Tensor:
    """`HeliosTransformerBlock.forward` with `temb` as compact rows `[B, 2, 6, D]`."""
    history = hidden_states.shape[1] - original_context_length
    mod = block.scale_shift_table.unsqueeze(0) + temb.float()  # [B, 2, 6, D] float32
    shift, scale, gate, c_shift, c_scale, c_gate = mod.unbind(2)

    # 1. self-attention
    normed = block.norm1(hidden_states.float())
    attn_in = _modulate(history, normed, scale, shift, hidden_states)
    attn_output = block.attn1(attn_in, None, None, rotary_emb, original_context_length)
    hidden_states = _gated(history, hidden_states, attn_output, gate)

    # 2. cross-attention (as diffusers: history tokens skip it with guidance_cross_attn)
    if block.guidance_cross_attn:
        past, hidden_states = torch.split(hidden_states, [history, original_context_length], dim=1)
        normed = block.norm2(hidden_states.float()).type_as(hidden_states)
        hidden_states = hidden_states + block.attn2(
            normed, encoder_hidden_states, None, None, original_context_length
        )
        hidden_states = torch.cat([past, hidden_states], dim=1)
    else:
        normed = block.norm2(hidden_states.float()).type_as(hidden_states)
        hidden_states = hidden_states + block.attn2(
            normed, encoder_hidden_states, None, None, original_context_length
        )

    # 3. feed-forward
    normed = block.norm3(hidden_states.float())
    ff_output = block.ffn(_modulate(history, normed, c_scale, c_shift, hidden_states))
    return _gated(history, hidden_states, ff_output.float(), c_gate)


@functools.cache
def _block_class(base: Any) -> type:
    """`base` with a forward that also takes compact rows; named as `base` so that
    `compile_repeated_blocks` (which matches class names) still compiles it."""
    # the plain function: dynamo cannot trace `base.forward` (diffusers allows the class in graph)
    diffusers_forward = base.forward

    def forward(
        self: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: torch.Tensor,
        original_context_length: int | None = None,
    ) -> torch.Tensor:
        if original_context_length is not None and is_compact(temb, hidden_states):
            return compact_block_forward(
                self,
                hidden_states,
                encoder_hidden_states,
                temb,
                rotary_emb,
                original_context_length,
            )
        out: torch.Tensor = diffusers_forward(
            self, hidden_states, encoder_hidden_states, temb, rotary_emb, original_context_length
        )
        return out

    return type(base.__name__, (base,), {"forward": forward, "__module__": __name__})


@functools.cache
def _processor_class() -> type:
    from diffusers.models.attention_dispatch import dispatch_attention_fn
    from diffusers.models.transformers.transformer_helios import HeliosAttnProcessor

    class TextKVProcessor(HeliosAttnProcessor):  # type: ignore[misc]
        """Cross-attention with keys and values primed per prompt; diffusers' processor else."""

        def __init__(self) -> None:
            super().__init__()
            self.key: torch.Tensor | None = None
            self.value: torch.Tensor | None = None

        def __call__(
            self,
            attn: Any,
            hidden_states: torch.Tensor,
            encoder_hidden_states: torch.Tensor | None = None,
            attention_mask: torch.Tensor | None = None,
            rotary_emb: Any = None,
            original_context_length: int | None = None,
        ) -> torch.Tensor:
            if self.key is None or self.value is None:
                out: torch.Tensor = super().__call__(
                    attn,
                    hidden_states,
                    encoder_hidden_states,
                    attention_mask,
                    rotary_emb,
                    original_context_length,
                )
                return out
            query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
            hidden_states = dispatch_attention_fn(
                query,
                self.key,
                self.value,
                attn_mask=attention_mask,
                dropout_p=0.0,
                is_causal=False,
                backend=self._attention_backend,
                parallel_config=None,
            )
            hidden_states = hidden_states.flatten(2, 3).type_as(query)
            hidden_states = attn.to_out[0](hidden_states)
            result: torch.Tensor = attn.to_out[1](hidden_states)
            return result

    return TextKVProcessor


def text_key_value(attn: Any, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One cross-attention's keys and values for embedded text, exactly as diffusers computes
    them inside its processor (projections, key norm, heads)."""
    if getattr(attn, "fused_projections", False):
        key, value = attn.to_kv(text).chunk(2, dim=-1)
    else:
        key, value = attn.to_k(text), attn.to_v(text)
    key = attn.norm_k(key)
    return key.unflatten(2, (attn.heads, -1)), value.unflatten(2, (attn.heads, -1))


@dataclass
class _Prompt:
    source: weakref.ref[torch.Tensor]
    version: int
    text: torch.Tensor
    key_values: list[tuple[torch.Tensor, torch.Tensor]]


class CompactPaths:
    """The engine path installed on one transformer (see the module docstring)."""

    def __init__(self, transformer: Any, capacity: int = 4) -> None:
        self.transformer = transformer
        self.capacity = capacity
        self._attn2 = [block.attn2 for block in transformer.blocks]
        self._prompts: list[_Prompt] = []
        self._local = threading.local()
        self.text_encodings = 0
        """How many times prompt text was embedded and projected (a test counts cache misses)."""

    @property
    def engaged(self) -> bool:
        return bool(getattr(self._local, "depth", 0))

    @contextlib.contextmanager
    def engage(self) -> Iterator[None]:
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1

    def prompt(self, raw: torch.Tensor) -> _Prompt:
        """Embedded text and per-block K/V of `raw` prompt embeddings, cached per tensor."""
        version = int(raw._version)
        for i, entry in enumerate(self._prompts):
            if entry.version == version and entry.source() is raw:
                self._prompts.append(self._prompts.pop(i))
                return entry
        text = self.transformer.condition_embedder.text_embedder(raw).contiguous()
        kv = [text_key_value(attn, text) for attn in self._attn2]
        entry = _Prompt(weakref.ref(raw), version, text, kv)
        self._prompts = [*self._prompts, entry][-self.capacity :]
        self.text_encodings += 1
        return entry

    def clear(self) -> None:
        """Forget cached prompts (weights changed, e.g. after quantization)."""
        self._prompts = []

    @contextlib.contextmanager
    def primed(self, prompt: _Prompt) -> Iterator[None]:
        """Cross-attention processors read `prompt`'s K/V for the duration (then diffusers')."""
        processors = [attn.processor for attn in self._attn2]
        for processor, (key, value) in zip(processors, prompt.key_values, strict=True):
            if hasattr(processor, "key"):
                processor.key, processor.value = key, value
        try:
            yield
        finally:
            for processor in processors:
                if hasattr(processor, "key"):
                    processor.key = processor.value = None


def install(transformer: Any) -> CompactPaths:
    """Install the engine path on `transformer` (once; later calls return the same paths)."""
    existing: CompactPaths | None = getattr(transformer, _ATTRIBUTE, None)
    if existing is not None:
        return existing
    paths = CompactPaths(transformer)
    processor_cls = _processor_class()
    for block in transformer.blocks:
        block.__class__ = _block_class(block.__class__)
        old = block.attn2.processor
        new = processor_cls()
        new._attention_backend = getattr(old, "_attention_backend", None)
        new._parallel_config = getattr(old, "_parallel_config", None)
        block.attn2.set_processor(new)
    diffusers_forward = transformer.forward

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if paths.engaged:
            from helios_serve.engine.compact_forward import engine_forward

            return engine_forward(self, paths, *args, **kwargs)
        return diffusers_forward(*args, **kwargs)

    transformer.forward = MethodType(forward, transformer)
    setattr(transformer, _ATTRIBUTE, paths)
    return paths


def paths_of(transformer: Any) -> CompactPaths | None:
    found: CompactPaths | None = getattr(transformer, _ATTRIBUTE, None)
    return found


@contextlib.contextmanager
def engaged(transformer: Any) -> Iterator[None]:
    """Run `transformer`'s calls inside through the engine path, where it is installed."""
    paths = paths_of(transformer)
    if paths is None:
        yield
        return
    with paths.engage():
        yield
