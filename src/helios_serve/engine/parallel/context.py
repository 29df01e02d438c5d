"""Context parallelism for the Helios transformer, through diffusers' own machinery.

diffusers splits the sequence at the input of every block's self-attention, cross-attention and
feed-forward and gathers it at their output (the transformer's `_cp_plan`); Ulysses (all-to-all
of heads) or ring attention (K/V passed round, merged by log-sum-exp) runs inside its attention
dispatch. We apply that plan with diffusers' hooks, with two differences from
`ModelMixin.enable_parallelism`, which:

- takes rank r's device to be accelerator r and builds a mesh over the whole world: here the
  world may hold a decode rank, and on the CPU (the tests) the accelerator count is 0, where
  it divides by zero; so the mesh is ours (`RankGroups.mesh`) and the config is set up with it;
- uses the plan as written for 40 blocks: the plan is cut to the blocks this checkpoint has.

Ring attention needs the log-sum-exp of each partial attention, which diffusers' "native"
backend does not return: ring runs on `_native_flash`, and on the CPU that backend's op gets a
kernel from PyTorch's CPU flash attention (`cpu_flash_attention`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch

from helios_serve.engine.parallel.group import RankGroups
from helios_serve.errors import CheckpointError, InvalidInputError

logger = logging.getLogger(__name__)

RING_BACKEND = "_native_flash"
_cpu_flash_library: Any = None


def plan_for(transformer: Any) -> dict[str, Any]:
    """The transformer class's `_cp_plan`, cut to the blocks this model has."""
    blocks = len(transformer.blocks)
    plan: dict[str, Any] = {}
    for key, value in type(transformer)._cp_plan.items():
        parts = key.split(".")
        if parts[0] == "blocks" and parts[1] != "*" and int(parts[1]) >= blocks:
            continue
        plan[key] = value
    return plan


def attention_backend_for(backend: str, ring: int) -> str:
    """The backend a layout runs: ring needs one that returns the log-sum-exp."""
    if ring > 1 and backend == "native":
        logger.info(
            "ring attention: using the %s attention backend (native has no LSE)", RING_BACKEND
        )
        return RING_BACKEND
    return backend


def cpu_flash_attention() -> None:
    """Give `aten::_scaled_dot_product_flash_attention` (CUDA only) a CPU kernel: PyTorch's
    own CPU flash attention, which returns the same (out, log-sum-exp) that ring needs."""
    global _cpu_flash_library
    if _cpu_flash_library is not None:
        return

    def flash_cpu(
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        return_debug_mask: bool = False,  # noqa: ARG001 (the op's signature)
        *,
        scale: float | None = None,
    ) -> tuple[Any, ...]:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, is_causal, scale=scale
        )
        empty = torch.empty(0)
        return out, lse, empty, empty, query.shape[2], key.shape[2], empty, empty, empty

    library = torch.library.Library("aten", "IMPL")
    library.impl("_scaled_dot_product_flash_attention", flash_cpu, "CPU")
    _cpu_flash_library = library  # kept: the kernel lives as long as the library object


def check_heads(transformer: Any, ulysses: int) -> None:
    heads = int(transformer.config.num_attention_heads)
    if heads % ulysses:
        raise CheckpointError(
            f"--parallel ulysses={ulysses}: this transformer has {heads} attention heads, "
            "which Ulysses cannot split evenly (pick a degree that divides it, or ring)"
        )


def enable_context_parallel(transformer: Any, groups: RankGroups, backend: str) -> None:
    """Split every forward of `transformer` over this rank's context-parallel mesh."""
    from diffusers import ContextParallelConfig
    from diffusers.hooks.context_parallel import apply_context_parallel
    from diffusers.models._modeling_parallel import ParallelConfig

    layout = groups.layout
    assert groups.mesh is not None
    check_heads(transformer, layout.ulysses)
    device = torch.device(layout.device_of(groups.rank))
    if layout.ring > 1 and device.type == "cpu":
        cpu_flash_attention()
    transformer.set_attention_backend(attention_backend_for(backend, layout.ring))
    mesh = groups.mesh["ring", "ulysses"]
    cp = ContextParallelConfig(ring_degree=layout.ring, ulysses_degree=layout.ulysses, mesh=mesh)
    config = ParallelConfig(context_parallel_config=cp)
    config.setup(groups.rank, layout.world_size, device, mesh=mesh)
    transformer._parallel_config = config
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_parallel_config"):
            processor._parallel_config = config
    apply_context_parallel(transformer, cp, plan_for(transformer))


def sequence_lengths(kwargs: Mapping[str, Any], patch: tuple[int, ...]) -> tuple[int, int]:
    """(all tokens, noisy tokens) of one Helios forward: the lengths the plan splits (the
    self-attention and feed-forward see all; the cross-attention only the noisy ones)."""

    def tokens(name: str, scale: int) -> int:
        value = kwargs.get(name)
        if value is None:
            return 0
        dims = value.shape[2:]
        return math.prod(-(-d // (p * scale)) for d, p in zip(dims, patch, strict=True))

    noisy = tokens("hidden_states", 1)
    history = tokens("latents_history_short", 1) + tokens("latents_history_mid", 2)
    history += tokens("latents_history_long", 4)
    return noisy + history, noisy


def set_uneven(transformer: Any, uneven: bool) -> None:
    """Equal shards where the lengths divide; diffusers' "anything" mode (uneven shards, their
    sizes exchanged first) where they do not (stage 0 of 640x384 over 8 ranks)."""
    config = transformer._parallel_config.context_parallel_config
    if config.ring_degree > 1:
        config.ring_anything = uneven
    else:
        config.ulysses_anything = uneven


def is_uneven(kwargs: Mapping[str, Any], patch: tuple[int, ...], parts: int) -> bool:
    return any(n % parts for n in sequence_lengths(kwargs, patch))


def stream_lengths(
    height: int, width: int, stages: int, vae_scale: int = 8
) -> list[tuple[int, int]]:
    """(all, noisy) tokens of each pyramid stage's forward for a stream of this size (patch
    1x2x2; history at full size: short 2 frames, mid 1x4x4 and long 4x8x8 patches)."""
    h, w = height // vae_scale, width // vae_scale
    history = 2 * (h // 2) * (w // 2) + -(-h // 4) * -(-w // 4) + 4 * -(-h // 8) * -(-w // 8)
    lengths = []
    for stage in range(stages):
        scale = 2 ** (stages - 1 - stage)
        noisy = 9 * (h // scale // 2) * (w // scale // 2)
        lengths.append((noisy + history, noisy))
    return lengths


def check_splittable(kwargs: Mapping[str, Any], patch: tuple[int, ...], layout: Any) -> None:
    """Refuse, before any rank starts, a forward the layout cannot split."""
    check_lengths(sequence_lengths(kwargs, patch), layout)


def check_lengths(lengths: tuple[int, int], layout: Any) -> None:
    """Uneven shards need one kind of attention alone, and NCCL (gloo cannot gather tensors
    of unequal sizes)."""
    parts = layout.context_parallel
    if parts == 1:
        return
    if min(lengths) < parts:
        raise InvalidInputError(
            f"this size gives {min(lengths)} tokens, fewer than the {parts} "
            "context-parallel ranks: pick a larger size",
            param="size",
        )
    if not any(n % parts for n in lengths):
        return
    if layout.ring > 1 and layout.ulysses > 1:
        why = "with both ring and ulysses"
    elif torch.device(layout.leader_device).type != "cuda":
        why = "on CPU ranks (gloo gathers equal shards only)"
    else:
        return
    raise InvalidInputError(
        f"{why}, every forward's token counts must divide by {parts}; this size gives "
        f"{lengths[0]} and {lengths[1]} (a pyramid's first stage is the smallest): "
        "pick another size",
        param="size",
    )
