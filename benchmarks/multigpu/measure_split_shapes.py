"""Measure on ONE GPU what each rank of a context-parallel layout computes per forward.

Under diffusers' Helios plan every rank runs, per transformer block: the block's own
elementwise work (norms, modulation, gates) on ALL tokens, and its share of the rest:
q/k/v/out projections and the feed-forward on L/n tokens, self-attention over all L keys with
H/n heads (Ulysses) or L/n queries against all L keys (ring), cross-attention for N/n noisy
tokens. This script builds one real 14B block (random bf16 weights; speed does not depend on the
values) and times exactly those shapes for n = 1, 2, 4, 8 and each pyramid stage at 640x384,
then multiplies by the 40 blocks. The collectives are not in it (they need several GPUs; their
bytes are in project.py). Its JSON feeds `project.py --measured`.

    python benchmarks/multigpu/measure_split_shapes.py --out split.json [--compile]
    python benchmarks/multigpu/measure_split_shapes.py --arch tiny --device cpu   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

ARCHS = {
    "14b": {"dim": 5120, "ffn": 13824, "heads": 40, "layers": 40, "text": 512},
    "tiny": {"dim": 24, "ffn": 32, "heads": 2, "layers": 2, "text": 16},
}
HEIGHT, WIDTH, STAGES = 384, 640, 3


def tokens(stage: int, height: int, width: int) -> tuple[int, int]:
    """(all, noisy) tokens of one forward at `stage` (as engine/parallel/context.py counts)."""
    h, w = height // 8, width // 8
    scale = 2 ** (STAGES - 1 - stage)
    noisy = 9 * (h // scale // 2) * (w // scale // 2)
    history = 2 * (h // 2) * (w // 2) + math.ceil(h / 4) * math.ceil(w / 4)
    history += 4 * math.ceil(h / 8) * math.ceil(w / 8)
    return noisy + history, noisy


def build_block(arch: dict[str, int], device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers.models.transformers.transformer_helios import HeliosTransformerBlock

    with torch.device(device):
        block = HeliosTransformerBlock(
            arch["dim"],
            arch["ffn"],
            arch["heads"],
            qk_norm="rms_norm_across_heads",
            cross_attn_norm=True,
            eps=1e-6,
            guidance_cross_attn=True,
        )
    return block.to(dtype).eval()


def rank_forward(
    block: Any, arch: dict[str, int], length: int, noisy: int, parts: int, mode: str
) -> Callable[[], None]:
    """One block's work on one rank of `parts`, as a closure over ready inputs."""
    d, heads = arch["dim"], arch["heads"]
    head_dim = d // heads
    dev, dtype = next(block.parameters()).device, next(block.parameters()).dtype
    local, local_noisy = length // parts, noisy // parts
    x = torch.randn(1, length, d, device=dev, dtype=dtype)
    mod = torch.randn(1, 6, d, device=dev, dtype=torch.float32)
    text_k = torch.randn(1, heads, arch["text"], head_dim, device=dev, dtype=dtype)
    attn1, attn2, ffn = block.attn1, block.attn2, block.ffn
    if mode == "ulysses":  # after the all-to-all: all L tokens, H/n heads
        qa = torch.randn(1, heads // parts, length, head_dim, device=dev, dtype=dtype)
        ka = va = qa
    else:  # ring: L/n queries against all L keys and values (gathered), all heads
        qa = torch.randn(1, heads, local, head_dim, device=dev, dtype=dtype)
        ka = va = torch.randn(1, heads, length, head_dim, device=dev, dtype=dtype)
    attended = torch.randn(1, local, d, device=dev, dtype=dtype)  # after the reverse all-to-all

    def run() -> None:
        # replicated: the block's elementwise work on every token
        norm = block.norm1(x.float()) * (1 + mod[:, 1]) + mod[:, 0]
        h = (x.float() + norm * mod[:, 2]).to(dtype)
        h = block.norm3(block.norm2(h.float()).float()) * (1 + mod[:, 4]) + mod[:, 3]
        # split: attn1 projections on L/n tokens, attention on the rank's share
        part = x[:, :local]
        for projected in (attn1.norm_q(attn1.to_q(part)), attn1.norm_k(attn1.to_k(part))):
            projected.view(1, local, heads, head_dim).transpose(1, 2).contiguous()  # a2a layout
        attn1.to_v(part)
        out = functional.scaled_dot_product_attention(qa, ka, va)
        out.transpose(1, 2).contiguous()  # into the reverse all-to-all's layout
        attn1.to_out[0](attended)
        # split: cross-attention for the rank's noisy tokens, text K/V cached per prompt
        cq = attn2.norm_q(attn2.to_q(x[:, :local_noisy])).view(1, local_noisy, heads, head_dim)
        cross = functional.scaled_dot_product_attention(cq.transpose(1, 2), text_k, text_k)
        attn2.to_out[0](cross.transpose(1, 2).reshape(1, local_noisy, d))
        # split: the feed-forward on L/n tokens
        ffn(h[:, :local].to(dtype))

    return run


def time_it(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(3):
            fn()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, default="14b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--mode", choices=["ulysses", "ring"], default="ulysses")
    parser.add_argument("--parts", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="torch.compile each rank's block")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    arch = ARCHS[args.arch]
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    height, width = (HEIGHT, WIDTH) if args.arch == "14b" else (64, 64)
    block = build_block(arch, device, dtype)
    results: dict[str, float] = {}
    for parts in (int(p) for p in args.parts.split(",")):
        if arch["heads"] % parts and args.mode == "ulysses":
            continue
        for stage in range(STAGES):
            length, noisy = tokens(stage, height, width)
            fn = rank_forward(block, arch, length, noisy, parts, args.mode)
            if args.compile:
                fn = torch.compile(fn)
            seconds = time_it(fn, device, args.repeats) * arch["layers"]
            results[f"stage{stage}_n{parts}"] = round(seconds, 6)
            line = f"stage {stage} ({length} tokens), {parts} rank(s): {seconds * 1e3:.2f} ms"
            sys.stdout.write(line + "\n")
    report = {
        "kind": "per-rank compute on split shapes, measured on one device (no collectives)",
        "arch": args.arch,
        "mode": args.mode,
        "compile": args.compile,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "size": f"{width}x{height}",
        "per_forward_s": results,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
