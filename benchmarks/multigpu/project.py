"""PROJECTION (not a measurement): one Helios 14B stream at 640x384 over 2, 4 and 8 GPUs.

Built from what one H200 measured (benchmarks/results/h200-14b-suite.json: the compiled
transformer's time per Distilled [1,1,1] chunk, the bf16 VAE decode, the profile's share of
split work) plus arithmetic: the FLOPs each rank runs on its split shapes and the bytes each
collective of diffusers' Helios context-parallel plan moves. Every assumption is a named
constant below and printed with the result. `measure_split_shapes.py` measures the per-rank
compute on one GPU; pass its JSON with --measured to replace the FLOP-scaled compute term.
Measured multi-GPU figures replace all of it when a multi-GPU machine is lent.

    python benchmarks/multigpu/project.py [--measured split.json] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks/results/h200-14b-suite.json"

# -- the model (Helios 14B = Wan2.1-14B + memory patches) and the size ----------------------
D, FFN, LAYERS, HEADS, TEXT = 5120, 13824, 40, 40, 512
HEIGHT, WIDTH, STAGES = 384, 640, 3
BF16 = 2

# -- assumptions (each one printed with the result) ------------------------------------------
LINK_GBPS = 300.0
"""Achievable NCCL bandwidth per GPU over NVLink 4 (H100/H200 SXM: 450 GB/s each way on paper;
all-gather / all-to-all bus bandwidth measured by others at ~300-370 GB/s)."""
LINK_GBPS_LOW = 150.0
"""The same with half that (a congested or smaller NVLink domain): the sensitivity column."""
COLLECTIVE_LATENCY_S = 15e-6
"""Fixed cost per NCCL collective (launch + sync), small messages."""
REPLICATED_FRACTION = 1 - (0.570 + 0.246) / 0.94
"""Share of the transformer's time that every rank repeats whole under diffusers' plan (norms,
modulation, residuals, RoPE, patch embeddings: everything outside attention and linears).
From the H200 profile: linears 0.570 s + attention 0.246 s of the transformer's 0.94 s."""
STEP_OVERHEAD_S = 0.976903 - 0.939834
"""Per chunk, rank 0 only: scheduler steps, noise, history bookkeeping (transformer_s - dit_s)."""


def tokens(stage: int) -> tuple[int, int]:
    """(all, noisy) tokens of one forward at `stage` (2 = full size): the lengths split."""
    h, w = HEIGHT // 8, WIDTH // 8
    scale = 2 ** (STAGES - 1 - stage)
    noisy = 9 * (h // scale // 2) * (w // scale // 2)
    history = 2 * (h // 2) * (w // 2) + math.ceil(h / 4) * math.ceil(w / 4)
    history += 4 * math.ceil(h / 8) * math.ceil(w / 8)
    return noisy + history, noisy


def forward_flops(stage: int) -> float:
    """One forward's FLOPs (2 per multiply-add; the formula of helios_serve/bench/arch.py)."""
    length, noisy = tokens(stage)
    per_layer = 8 * D * D * length + 4 * length * length * D + 4 * D * FFN * length
    per_layer += 4 * D * D * noisy + 4 * noisy * TEXT * D  # cross-attention (text K/V cached)
    return float(LAYERS * per_layer)


def comm_bytes(stage: int, ulysses: int, ring: int) -> tuple[float, int]:
    """(bytes one rank receives, collectives) per forward under diffusers' Helios plan: the
    sequence is split at the input of every attention and feed-forward and all-gathered at
    its output; Ulysses all-to-alls q, k, v and the output; ring all-gathers k and v."""
    n = ulysses * ring
    if n == 1:
        return 0.0, 0
    length, noisy = tokens(stage)
    gathers = (n - 1) / n * (2 * length + noisy) * D * BF16  # attn1, ffn: all; attn2: noisy
    per_layer, count = gathers, 3
    if ulysses > 1:
        per_layer += 4 * (ulysses - 1) / ulysses * (length / n) * D * BF16
        count += 4
    if ring > 1:
        per_layer += (ring - 1) / ring * 2 * (length / ulysses) * D * BF16
        count += 1
    return LAYERS * per_layer, LAYERS * count


@dataclass
class Layout:
    name: str
    gpus: int
    ulysses: int = 1
    ring: int = 1
    cfg: int = 1
    decode_rank: bool = False


@dataclass
class Row:
    layout: str
    gpus: int
    transformer_s: float
    comm_s: float
    decode_s: float
    chunk_s: float
    fps: float
    fps_low_link: float
    weights_gb_per_rank: float


def transformer_time(
    layout: Layout, one_gpu_s: float, link: float, measured: dict[str, float] | None
) -> tuple[float, float]:
    """(compute + comm, comm) of a [1,1,1] chunk's three forwards on the layout."""
    flops = [forward_flops(s) for s in range(STAGES)]
    n = layout.ulysses * layout.ring
    compute = comm = 0.0
    for stage in range(STAGES):
        alone = one_gpu_s * flops[stage] / sum(flops)
        key = f"stage{stage}_n{n}"
        if measured is not None and key in measured:
            compute += measured[key]
        else:
            compute += alone * (REPLICATED_FRACTION + (1 - REPLICATED_FRACTION) / n)
        size, count = comm_bytes(stage, layout.ulysses, layout.ring)
        comm += size / (link * 1e9) + count * COLLECTIVE_LATENCY_S
    return compute + comm + STEP_OVERHEAD_S, comm


def project(layout: Layout, suite: dict, measured: dict[str, float] | None) -> Row:
    chunk = suite["compile"]["configs"][0]["stream_mean_steady_chunk"]
    one_gpu_dit = chunk["dit_s"]
    decode = suite["vae"]["decode_s_bf16"]
    times = {}
    for link in (LINK_GBPS, LINK_GBPS_LOW):
        tr, comm = transformer_time(layout, one_gpu_dit, link, measured)
        # a decode rank decodes chunk k while k+1 denoises; else rank 0's GPU runs both
        # (the decode on a second CUDA stream) and their kernels add up
        wall = max(tr, decode) if layout.decode_rank else tr + decode
        times[link] = (tr, comm, wall)
    tr, comm, wall = times[LINK_GBPS]
    weights = 14.3e9 * BF16 / 1e9  # every transformer rank holds all weights (CP shards none)
    return Row(
        layout=layout.name,
        gpus=layout.gpus,
        transformer_s=round(tr, 3),
        comm_s=round(comm, 4),
        decode_s=round(decode, 3),
        chunk_s=round(wall, 3),
        fps=round(33 / wall, 1),
        fps_low_link=round(33 / times[LINK_GBPS_LOW][2], 1),
        weights_gb_per_rank=round(weights, 1),
    )


LAYOUTS = [
    Layout("1 GPU, decode overlapped on a 2nd CUDA stream (suite harness)", 1),
    Layout("--gpus 0,1 --decode-device 1", 2, decode_rank=True),
    Layout("--gpus 0,1 --parallel ulysses=2", 2, ulysses=2),
    Layout("--gpus 0,1 --parallel ring=2", 2, ring=2),
    Layout("--gpus 0,1,2 --parallel ulysses=2 --decode-device 2", 3, ulysses=2, decode_rank=True),
    Layout("--gpus 0,1,2,3 --parallel ulysses=4", 4, ulysses=4),
    Layout(
        "--gpus 0,1,2,3,4 --parallel ulysses=4 --decode-device 4", 5, ulysses=4, decode_rank=True
    ),
    Layout("--gpus 0,1,2,3,4,5,6,7 --parallel ulysses=8", 8, ulysses=8),
    Layout("--gpus 0,1,2,3,4,5,6,7 --parallel ring=8", 8, ring=8),
]


def cfg_rows(suite: dict) -> list[dict[str, float | str]]:
    """Base and Mid (guidance > 1): one denoising step at full size is two forwards."""
    chunk = suite["compile"]["configs"][0]["stream_mean_steady_chunk"]
    flops = [forward_flops(s) for s in range(STAGES)]
    full = chunk["dit_s"] * flops[2] / sum(flops)
    transfer = 9 * (HEIGHT // 16) * (WIDTH // 16) * 4 * 16 * BF16 / (LINK_GBPS * 1e9)
    return [
        {"layout": "1 GPU, cond then uncond", "gpus": 1, "step_s": round(2 * full, 3)},
        {
            "layout": "--gpus 0,1 --parallel cfg=2",
            "gpus": 2,
            "step_s": round(full + transfer + 2 * COLLECTIVE_LATENCY_S, 3),
        },
        {
            "layout": "--gpus 0,1,2,3 --parallel ulysses=2,cfg=2",
            "gpus": 4,
            "step_s": round(
                transformer_time(Layout("", 2, ulysses=2), full, LINK_GBPS, None)[0]
                - STEP_OVERHEAD_S
                + transfer,
                3,
            ),
        },
    ]


def markdown(rows: list[Row], cfg: list[dict[str, float | str]], measured: bool) -> str:
    compute = "measured per-rank split shapes" if measured else "FLOP-scaled from one GPU"
    lines = [
        "# PROJECTION: Helios 14B, 640x384, Distilled [1,1,1], compiled, VAE bf16",
        "",
        f"Not a measurement. Compute: {compute}; communication: bytes per collective of "
        f"diffusers' plan at {LINK_GBPS:g} GB/s ({LINK_GBPS_LOW:g} GB/s in the last column), "
        f"{COLLECTIVE_LATENCY_S * 1e6:g} us per collective, not overlapped with compute. "
        f"Replicated share of the transformer: {REPLICATED_FRACTION:.2f}.",
        "",
        "| layout | GPUs | transformer s/chunk | of it comm | decode s | chunk s | fps | "
        f"fps at {LINK_GBPS_LOW:g} GB/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r.layout}` | {r.gpus} | {r.transformer_s} | {r.comm_s} | {r.decode_s} | "
            f"{r.chunk_s} | **{r.fps}** | {r.fps_low_link} |"
        )
    lines += ["", "Base / Mid, one full-size denoising step with guidance:", ""]
    lines += ["| layout | GPUs | s per step |", "|---|---|---|"]
    lines += [f"| `{c['layout']}` | {c['gpus']} | {c['step_s']} |" for c in cfg]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    suite = json.loads(SUITE.read_text())
    measured = json.loads(args.measured.read_text())["per_forward_s"] if args.measured else None
    rows = [project(layout, suite, measured) for layout in LAYOUTS]
    cfg = cfg_rows(suite)
    text = markdown(rows, cfg, measured is not None)
    sys.stdout.write(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "projection-multigpu-14b.md").write_text(text)
        data = {
            "kind": "PROJECTION (not measured)",
            "source": str(SUITE.relative_to(ROOT)),
            "assumptions": {
                "link_gbps": LINK_GBPS,
                "link_gbps_low": LINK_GBPS_LOW,
                "collective_latency_s": COLLECTIVE_LATENCY_S,
                "replicated_fraction": REPLICATED_FRACTION,
                "step_overhead_s": STEP_OVERHEAD_S,
            },
            "tokens": {f"stage{s}": tokens(s) for s in range(STAGES)},
            "comm_bytes_per_forward": {
                f"stage{s}_ulysses{n}": comm_bytes(s, n, 1)[0]
                for s in range(STAGES)
                for n in (2, 4, 8)
            },
            "rows": [asdict(r) for r in rows],
            "cfg": cfg,
        }
        (args.out / "projection-multigpu-14b.json").write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
