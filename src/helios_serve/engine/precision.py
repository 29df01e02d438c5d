"""Exact (bf16, diffusers' math) or fast (FP8 linear layers in the transformer blocks) mode.

Fast mode quantizes the blocks' linear layers to FP8 e4m3 with dynamic row-wise scales (one
scale per token for the activations, per output channel for the weights) through torchao's
`Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())`, after fusing each
self-attention's q/k/v into one projection. Kept in bf16: everything outside the blocks (patch
embeddings, condition embedder, output norm and projection), the cross-attention's text keys and
values (computed once per prompt), and optionally the first and last `edge_blocks` blocks.

FP8 matmuls need an NVIDIA GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell) and
torchao (`pip install 'helios-serve[fast]'`); anywhere else the engine refuses to start with one
line that says so (`FastModeUnavailableError`), never a silent bf16 fallback.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import torch

from helios_serve.errors import InvalidInputError

TORCHAO_VERSION = "0.18.0"
FP8_MIN_CAPABILITY = (8, 9)
_KEEP_BF16 = ("attn2.to_k", "attn2.to_v", "attn2.to_kv")
"""Cross-attention K/V: computed once per prompt, so FP8 would buy nothing there."""
_BLOCK_LINEAR = re.compile(r"^blocks\.(\d+)\.(.+)$")


class Precision(enum.StrEnum):
    EXACT = "exact"
    FAST = "fast"


class FastModeUnavailableError(InvalidInputError):
    """`--precision fast` on a machine that cannot run it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"--precision fast is unavailable here: {reason}", param="precision")


def parse_precision(value: str) -> Precision:
    try:
        return Precision(value)
    except ValueError:
        raise InvalidInputError(
            f"precision must be exact or fast, got {value!r}", param="precision"
        ) from None


def check_fast_supported(device: torch.device) -> None:
    """Raise `FastModeUnavailableError` unless FP8 matmuls and torchao are there (cheap checks,
    before any weights load)."""
    if device.type != "cuda":
        raise FastModeUnavailableError(
            f"FP8 matmuls need an NVIDIA GPU of compute capability "
            f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}+ (e.g. H100), and the engine runs "
            f"on {device.type} (use --precision exact)"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise FastModeUnavailableError(
            f"{name} has compute capability {capability[0]}.{capability[1]}; FP8 matmuls need "
            f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}+ (use --precision exact)"
        )
    torchao_version()


def torchao_version() -> str:
    try:
        import torchao
    except ImportError:
        raise FastModeUnavailableError(
            f"torchao is not installed (pip install 'helios-serve[fast]': "
            f"torchao=={TORCHAO_VERSION})"
        ) from None
    return str(getattr(torchao, "__version__", "unknown"))


def fp8_layer_filter(num_layers: int, edge_blocks: int = 0) -> Any:
    """torchao `filter_fn`: the blocks' `nn.Linear`s, except cross-attention K/V and the first
    and last `edge_blocks` blocks."""
    if edge_blocks < 0 or 2 * edge_blocks >= num_layers:
        raise InvalidInputError(
            f"fp8 edge blocks must leave some of the {num_layers} blocks, got {edge_blocks}",
            param="precision",
        )

    def keep(module: torch.nn.Module, fqn: str) -> bool:
        match = _BLOCK_LINEAR.match(fqn)
        if not isinstance(module, torch.nn.Linear) or match is None:
            return False
        index, name = int(match.group(1)), match.group(2)
        if index < edge_blocks or index >= num_layers - edge_blocks:
            return False
        return not name.startswith(_KEEP_BF16)

    return keep


def fuse_self_attention(transformer: Any) -> None:
    """One q/k/v projection per self-attention (one GEMM, one FP8 activation quantization);
    the separate projections are dropped so their weights are not kept twice."""
    for block in transformer.blocks:
        attn = block.attn1
        if getattr(attn, "fused_projections", False):
            continue
        attn.fuse_projections()
        for name in ("to_q", "to_k", "to_v"):
            setattr(attn, name, None)


def quantize_fp8(transformer: Any, edge_blocks: int = 0) -> list[str]:
    """Make `transformer` fast mode in place; returns the names of the FP8 layers."""
    torchao_version()
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        PerRow,
        quantize_,
    )

    fuse_self_attention(transformer)
    keep = fp8_layer_filter(len(transformer.blocks), edge_blocks)
    names = [fqn for fqn, module in transformer.named_modules() if keep(module, fqn)]
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    try:
        quantize_(transformer, config, filter_fn=keep)
    except (AssertionError, RuntimeError, NotImplementedError) as exc:
        raise FastModeUnavailableError(f"torchao refused the FP8 layers: {exc}") from None
    return names


def probe_fp8(device: torch.device) -> None:
    """One small FP8 linear on `device`: a kernel missing for this GPU fails here, at start-up,
    not in the first chunk."""
    torchao_version()
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        PerRow,
        quantize_,
    )

    layer = torch.nn.Linear(64, 64, device=device, dtype=torch.bfloat16)
    try:
        quantize_(layer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
        with torch.no_grad():
            layer(torch.randn(32, 64, device=device, dtype=torch.bfloat16))
    except Exception as exc:  # any failure here means "cannot run FP8 on this machine"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FastModeUnavailableError(f"an FP8 test layer failed on {device}: {first}") from None
