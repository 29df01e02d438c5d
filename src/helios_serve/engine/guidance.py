"""Classifier-free guidance: how the conditional and unconditional passes run, and how they mix.

The two passes differ only in their text embeddings. `GuidancePasses` is the one thing that
decides how they reach the transformer:

- `SequentialPasses` (the default): two forwards, conditional first, exactly as diffusers'
  pipelines run them (bit-equal to them);
- `BatchedPasses`: one forward of batch 2 (cond, uncond): one weight read per step instead of
  two, equal to the two passes within rounding (fp32 on CPU: ~1e-6 on the tiny model; bf16 on a
  GPU: bf16 rounding);
- a pass per GPU (issue 22) fits the same interface: it gets the same arguments.

Every implementation keeps the order (cond, uncond), which step caching relies on (cache-dit's
separate-CFG contexts count calls: even = cond, odd = uncond).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

import torch

GuidanceMode = Literal["sequential", "batched", "parallel"]
GUIDANCE_MODES: tuple[GuidanceMode, ...] = ("sequential", "batched")
"""The modes a flag chooses; "parallel" (a pass per CFG branch of ranks, `engine.parallel`'s
`ParallelPasses`) comes with a `--parallel cfg=2` layout."""


class GuidancePasses(Protocol):
    """Runs the conditional and unconditional passes of one denoising step."""

    mode: GuidanceMode

    @property
    def separate_calls(self) -> bool:
        """True when cond and uncond are separate transformer calls (in that order)."""
        ...

    def run(
        self,
        transformer: Any,
        inputs: Mapping[str, Any],
        cond_embeds: torch.Tensor,
        uncond_embeds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) predictions for `inputs` (the transformer's kwargs without the text
        embeddings, batch 1)."""
        ...


class SequentialPasses:
    """Two forwards, conditional then unconditional (diffusers' order and cache contexts)."""

    mode: GuidanceMode = "sequential"
    separate_calls = True

    def run(
        self,
        transformer: Any,
        inputs: Mapping[str, Any],
        cond_embeds: torch.Tensor,
        uncond_embeds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with transformer.cache_context("cond"):
            cond = transformer(encoder_hidden_states=cond_embeds, **inputs)[0]
        with transformer.cache_context("uncond"):
            uncond = transformer(encoder_hidden_states=uncond_embeds, **inputs)[0]
        return cond, uncond


BATCH_EXPANDED = (
    "timestep",
    "latents_history_short",
    "latents_history_mid",
    "latents_history_long",
)
"""Inputs shared by both halves: expanded to batch 2 as views, without copies."""


class BatchedPasses:
    """One forward of batch 2: rows (cond, uncond).

    The stacked text embeddings are built once per (cond, uncond) pair and reused while the
    pair is the same (a whole chunk), so per-prompt caches keyed on the embedding tensor (text
    K/V) see one stable tensor for the chunk.
    """

    mode: GuidanceMode = "batched"
    separate_calls = False

    def __init__(self) -> None:
        self._pair: tuple[torch.Tensor, torch.Tensor] | None = None
        self._stacked: torch.Tensor | None = None

    def stacked_embeds(self, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        if self._pair is None or self._pair[0] is not cond or self._pair[1] is not uncond:
            self._pair = (cond, uncond)
            self._stacked = torch.cat([cond, uncond])
        assert self._stacked is not None
        return self._stacked

    def run(
        self,
        transformer: Any,
        inputs: Mapping[str, Any],
        cond_embeds: torch.Tensor,
        uncond_embeds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batched = dict(inputs)
        batched["hidden_states"] = torch.cat([inputs["hidden_states"]] * 2)
        for name in BATCH_EXPANDED:
            value = inputs[name]
            batched[name] = value.expand(2, *value.shape[1:])
        stacked = self.stacked_embeds(cond_embeds, uncond_embeds)
        with transformer.cache_context("cond_uncond"):
            out = transformer(encoder_hidden_states=stacked, **batched)[0]
        cond, uncond = out.chunk(2)
        return cond, uncond


def guidance_passes(mode: GuidanceMode) -> GuidancePasses:
    """A fresh runner for `mode` (each stream owns its own: `BatchedPasses` keeps state)."""
    if mode == "batched":
        return BatchedPasses()
    if mode == "sequential":
        return SequentialPasses()
    raise ValueError(f"unknown guidance mode {mode!r}; expected one of {GUIDANCE_MODES}")


def classifier_free(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    return uncond + guidance * (cond - uncond)


def cfg_zero_star(
    cond: torch.Tensor, uncond: torch.Tensor, guidance: float, zero_init: bool
) -> torch.Tensor:
    """CFG-Zero*: rescale the unconditional branch by its projection on the conditional one."""
    batch = cond.shape[0]
    # reshape, not view: diffusers' .view crashes on 1x1 grids
    pos = cond.reshape(batch, -1).float()
    neg = uncond.reshape(batch, -1).float()
    alpha = (pos * neg).sum(dim=1, keepdim=True) / ((neg**2).sum(dim=1, keepdim=True) + 1e-8)
    alpha = alpha.view(batch, *([1] * (cond.dim() - 1))).to(cond.dtype)
    if zero_init:
        return cond * 0.0
    return uncond * alpha + guidance * (cond - uncond * alpha)
