"""The GPU check of issue 20: exact and fast mode against diffusers, one process, at most 8 minutes.

``python -m helios_bench.gpu_check --out DIR`` (scripts/gpu_check.sh runs it on a GPU
machine) builds the real Helios 14B architecture with random bf16 weights and the Wan2.1 VAE on
the GPU and runs these phases in order of importance, writing ``DIR/gpu_check.json`` and the
table ``DIR/gpu_check.md`` after every one (a phase whose estimate exceeds the time left is
skipped, so a run cut short keeps the most important numbers). Distilled ``[1,1,1]``, first
chunk amplified, 640x384, random (1, 512, 4096) prompt embeddings.

1. ``diffusers_eager``: stock diffusers (eager, SDPA, fp32 VAE, as its docs show).
2. ``diffusers_compiled``: diffusers on the same compiled blocks, bf16 VAE.
3. ``stream_exact``: the stream in exact mode (the engine's transformer path, the rebuilt bf16
   decode): serially, with per-part times (transformer, decode) and every chunk's latents kept,
   then with the decode of chunk k overlapped with chunk k+1 (``prefetch``, as jobs run).
4. ``stream_fast``: the same after FP8 quantization in place (bf16 is measured first).
5. ``quality``: fast against exact per chunk (latent relative error, cosine, frame PSNR).
6. ``decode``: the decode variants each alone on one steady chunk's latents.

``--tiny`` runs the same phases on a toy of the architecture on the CPU at 64x64 (fast mode
then only rounds the weights to FP8 and back: the CPU has no FP8 matmuls): it tests this script,
its numbers say nothing about GPU speed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.types import Variant
from helios_serve.engine.loader import LoadedModel, quiet_libraries
from helios_serve.engine.vae_decode import raise_recompile_limit

from . import gpu_check_phases as phases
from .arch import (
    HELIOS_14B_TRANSFORMER,
    WAN21_VAE,
    RandomModelSpec,
    RandomPromptEncoder,
    build_random_components,
    random_model,
)
from .gpu_check_report import format_markdown
from .report import device_description
from .suite import matmul_ceiling

TINY_TRANSFORMER: dict[str, Any] = {
    **HELIOS_14B_TRANSFORMER,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "ffn_dim": 64,
    "num_layers": 3,
    "text_dim": 32,
    "freq_dim": 16,
    "rope_dim": (4, 6, 6),
}
TINY_VAE: dict[str, Any] = {
    **WAN21_VAE,
    "base_dim": 4,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
}

ESTIMATES_S = {
    "diffusers_eager": 35,
    "diffusers_compiled": 70,
    "stream_exact": 75,
    "stream_fast": 90,
    "quality": 15,
    "decode": 40,
}
"""Seconds each phase is expected to take on an H100 with the 14B model (compilation included)."""
PHASES = tuple(ESTIMATES_S)


def _log(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Check:
    """The models, the flags and everything measured so far."""

    args: argparse.Namespace
    device: torch.device
    spec: RandomModelSpec
    transformer: Any
    vae32: Any
    vae16: Any
    encoder: RandomPromptEncoder
    started: float
    compiled: bool = False
    results: dict[str, Any] = field(default_factory=dict)
    latents: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def model(self, vae: Any) -> LoadedModel:
        return random_model(self.spec, Variant.DISTILLED, (self.transformer, vae))

    @property
    def settings(self) -> SamplingSettings:
        return PRESETS[Variant.DISTILLED].with_overrides(
            pyramid_steps=(1, 1, 1), max_sequence_length=self.args.text_tokens
        )

    def left_s(self) -> float:
        if self.args.budget_s == 0:
            return float("inf")
        budget: float = self.args.budget_s
        return budget - (time.perf_counter() - self.started)

    def compile_blocks(self) -> float:
        """Regional compile of the transformer blocks; seconds spent wrapping (compilation itself
        happens at the first call of each shape)."""
        self.compiled = True
        if self.args.compile_backend == "none":
            return 0.0
        raise_recompile_limit()
        kwargs: dict[str, Any] = {"fullgraph": True, "dynamic": False}
        kwargs["backend"] = self.args.compile_backend
        if self.args.compile_mode != "default":
            kwargs["mode"] = self.args.compile_mode
        start = time.perf_counter()
        self.transformer.compile_repeated_blocks(**kwargs)
        return time.perf_counter() - start

    def save(self) -> None:
        out = self.args.out
        (out / "gpu_check.json").write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        (out / "gpu_check.md").write_text(format_markdown(self.results))


PHASE_FUNCTIONS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "diffusers_eager": phases.diffusers_eager,
    "diffusers_compiled": phases.diffusers_compiled,
    "stream_exact": phases.stream_exact,
    "stream_fast": phases.stream_fast,
    "quality": phases.quality,
    "decode": phases.decode_variants,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m helios_bench.gpu_check", description=__doc__)
    a = p.add_argument
    a("--out", type=Path, required=True)
    a("--tiny", action="store_true", help="a toy of the architecture on the CPU (tests the script)")
    a("--device", default=None, help="default: cuda (cpu with --tiny)")
    a("--width", type=int, default=None, help="default 640 (64 with --tiny)")
    a("--height", type=int, default=None, help="default 384 (64 with --tiny)")
    a("--chunks", type=int, default=5, help="overlapped (prefetch) stream length (default 5)")
    a("--quality-chunks", type=int, default=9, help="serial stream length (default 9: 8 steady)")
    a("--diffusers-chunks", type=int, default=4, help="diffusers' call length (default 4)")
    a("--text-tokens", type=int, default=None, help="default 512 (8 with --tiny)")
    a("--seed", type=int, default=0)
    a(
        "--budget-s",
        type=float,
        default=None,
        help="skip phases once this many seconds have passed (default 450; no limit with --tiny)",
    )
    a("--compile-backend", default=None, help="inductor (default; 'eager' with --tiny) or none")
    a("--compile-mode", default="default")
    a("--fp8-edge-blocks", type=int, default=0, help="fast mode: first/last N blocks stay bf16")
    a("--compile-vae", action="store_true", help="the streams decode with a compiled decoder")
    a("--decode-repeats", type=int, default=3)
    a("--warmups", type=int, default=1, help="warm-up calls before timing (0: none, tests)")
    a("--phases", default=",".join(PHASES))
    args = p.parse_args(argv)
    tiny = args.tiny
    args.device = args.device or ("cpu" if tiny else "cuda")
    args.width = args.width or (64 if tiny else 640)
    args.height = args.height or (64 if tiny else 384)
    args.text_tokens = args.text_tokens or (8 if tiny else 512)
    args.compile_backend = args.compile_backend or ("eager" if tiny else "inductor")
    if args.budget_s is None:
        args.budget_s = 0 if tiny else 450
    args.phases = [x for x in args.phases.split(",") if x]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}")
    if args.chunks < 3 or args.quality_chunks < 2:
        p.error("--chunks must be at least 3 and --quality-chunks at least 2")
    return args


def build(args: argparse.Namespace) -> Check:
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    spec = RandomModelSpec(
        TINY_TRANSFORMER if args.tiny else HELIOS_14B_TRANSFORMER,
        TINY_VAE if args.tiny else WAN21_VAE,
        device,
        dtype=dtype,
    )
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    transformer, vae32 = build_random_components(spec)
    vae16 = copy.deepcopy(vae32).to(dtype)  # the engine's VAE (bf16 on a GPU)
    encoder = RandomPromptEncoder(int(spec.transformer["text_dim"]), device, dtype)
    return Check(args, device, spec, transformer, vae32, vae16, encoder, started)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(check: Check) -> dict[str, Any]:
    import diffusers

    out: dict[str, Any] = {
        "tool": "helios_bench.gpu_check",
        "device": device_description(check.device),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": _load_average(),
        "arch": "tiny (CPU test of the script)" if check.args.tiny else "helios-14b random bf16",
        "settings": {
            "variant": "distilled",
            "pyramid_steps": [1, 1, 1],
            "amplify_first_chunk": True,
            "width": check.args.width,
            "height": check.args.height,
            "text_tokens": check.args.text_tokens,
            "seed": check.args.seed,
            "compile_backend": check.args.compile_backend,
            "compile_mode": check.args.compile_mode,
        },
    }
    if check.device.type == "cuda":
        props = torch.cuda.get_device_properties(check.device)
        out |= {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(check.device))),
            "sm_count": props.multi_processor_count,
            "matmul_bf16_tflops": round(matmul_ceiling(check.device), 1),
        }
    try:
        import torchao

        out["torchao"] = torchao.__version__
    except ImportError:
        out["torchao"] = None
    return out


def run_phase(check: Check, name: str) -> None:
    estimate = 0.0 if check.args.tiny else ESTIMATES_S[name]
    if check.left_s() < estimate:
        check.results[name] = {"skipped": f"{check.left_s():.0f} s left < {estimate} s estimate"}
        _log(f"phase {name} skipped: out of time")
        return
    _log(f"phase {name}")
    start = time.perf_counter()
    try:
        check.results[name] = PHASE_FUNCTIONS[name](check)
    except Exception as exc:
        traceback.print_exc()
        check.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    check.results[name]["phase_s"] = round(time.perf_counter() - start, 2)
    _log(f"phase {name} done in {time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    if args.tiny:  # toy tensors: threads cost more in synchronisation than they give
        torch.set_num_threads(1)
    try:
        return _run(args, sys.argv[1:] if argv is None else argv)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    quiet_libraries()  # diffusers' per-call warnings would bury the phase log
    check = build(args)
    check.results = environment(check)
    check.results["command"] = " ".join(["python -m helios_bench.gpu_check", *argv])
    check.results["build_s"] = round(time.perf_counter() - check.started, 2)
    check.save()
    for name in PHASES:
        if name in args.phases:
            run_phase(check, name)
            check.save()
    check.results["total_s"] = round(time.perf_counter() - check.started, 2)
    check.results["load_average_after"] = _load_average()
    check.save()
    print(format_markdown(check.results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
