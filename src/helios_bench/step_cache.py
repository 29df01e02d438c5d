"""`helios bench-step-cache`: Base and Mid chunk time with and without step caching and batched
guidance, beside how far their frames move from the plain ones (PSNR, max error).

Four streams per preset, same seed and prompt, through `ChunkStreamer`, a chunk each in turn:
``full`` (every step, two guidance passes: the reference), ``batched`` (guidance in one forward
of batch 2), ``cached`` (cache-dit DBCache) and ``cached+batched``. Frames of every chunk (the
warm-up ones too) are compared with the reference's as uint8; time is the denoise time of the
chunks after the warm-up (the VAE decode is the same in all four).

``--arch tiny`` (CPU): the tiny Base and Mid checkpoints. Their weights are random: the timing
ratios and the mechanics are real, the PSNR says nothing about what a viewer would see, and how
often DBCache finds neighbouring steps similar depends on the weights. ``--arch 14b`` (a CUDA
GPU with ~45 GB free): the real 14B architecture with random bf16 weights (`bench.arch`); there
``residual_diff_threshold: 1`` measures the schedule's bound (every step after the warm-up that
the streak limit allows is cached).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from helios_serve.config import default_data_dir
from helios_serve.core.settings import PRESETS, GuidanceMode, SamplingSettings
from helios_serve.core.step_cache import StepCacheSettings, parse_step_cache_flag
from helios_serve.core.types import StepProgress, Variant
from helios_serve.engine.loader import LoadedModel, load_model
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest

PROMPT = "a red fox runs through fresh snow under a pale winter sky"
RUNS: tuple[tuple[str, GuidanceMode, bool], ...] = (
    ("full", "sequential", False),
    ("batched", "batched", False),
    ("cached", "sequential", True),
    ("cached+batched", "batched", True),
)


@dataclass(frozen=True)
class RunResult:
    preset: str
    run: str
    guidance: str
    step_cache: str | None
    denoise_s: float
    """Mean denoise seconds per timed chunk (wall clock)."""
    speedup: float
    denoise_cpu_s: float
    """The same in CPU seconds of the whole process (steadier on a shared machine)."""
    cpu_speedup: float
    cached_calls: float
    """Share of transformer calls whose middle blocks were reused."""
    psnr_db: float | None
    """Against the `full` run's frames; None where they are identical."""
    max_error: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--arch",
        choices=("tiny", "14b", "small"),
        default="tiny",
        help="tiny (CPU), 14b (CUDA GPU) or small (the 14b code path on a toy, CPU)",
    )
    a("--presets", default="base,mid", help="base, mid or both (default base,mid)")
    a("--steps", type=int, default=50, help="Base steps per chunk (default 50, its preset)")
    a("--pyramid-steps", default="20,20,20", help="Mid steps per stage (default 20,20,20)")
    a("--width", type=int, default=None, help="default 64 (tiny), 640 (14b)")
    a("--height", type=int, default=None, help="default 64 (tiny), 384 (14b)")
    a("--chunks", type=int, default=2, help="timed chunks per run (default 2)")
    a("--warmup", type=int, default=1, help="chunks before timing (default 1)")
    a(
        "--step-cache",
        type=parse_step_cache_flag,
        default=StepCacheSettings(),
        metavar="JSON",
        help="DBCache settings of the cached runs (default: vLLM-Omni's defaults)",
    )
    a("--data-dir", type=Path, default=None, help="where tiny checkpoints are built")
    a("--seed", type=int, default=0)
    a("--out", type=Path, default=None, help="write the results as JSON here")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "bench-step-cache",
        help="Base/Mid chunk time with and without step caching and batched guidance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def _presets(text: str) -> list[Variant]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names or any(n not in ("base", "mid") for n in names):
        raise SystemExit(f"--presets takes base and/or mid, got {text!r}")
    return [Variant(n) for n in names]


def _settings(variant: Variant, model: LoadedModel, args: argparse.Namespace) -> SamplingSettings:
    settings = PRESETS[variant].with_overrides(
        max_sequence_length=model.default_max_sequence_length
    )
    if variant is Variant.BASE:
        return settings.with_overrides(num_inference_steps=args.steps)
    steps = tuple(int(s) for s in args.pyramid_steps.split(","))
    return settings.with_overrides(pyramid_steps=steps)


def _models(args: argparse.Namespace, presets: list[Variant]) -> Iterator[tuple[Variant, Any]]:
    """(variant, (model, prompt encoder)) per preset."""
    if args.arch == "tiny":
        for variant in presets:
            model = load_model(f"tiny-{variant.value}", args.data_dir or default_data_dir())
            yield variant, (model, None)
        return
    from helios_bench.arch import (
        HELIOS_14B_TRANSFORMER,
        WAN21_VAE,
        RandomModelSpec,
        RandomPromptEncoder,
        build_random_components,
        random_model,
    )
    from helios_bench.suite import SMALL_TRANSFORMER, SMALL_VAE

    if args.arch == "small":  # the 14b code path on a toy of the architecture, on the CPU
        spec = RandomModelSpec(
            SMALL_TRANSFORMER, SMALL_VAE, torch.device("cpu"), dtype=torch.float32
        )
    elif torch.cuda.is_available():
        spec = RandomModelSpec(HELIOS_14B_TRANSFORMER, WAN21_VAE, torch.device("cuda"))
    else:
        raise SystemExit("--arch 14b needs a CUDA GPU with ~45 GB free (use --arch tiny)")
    torch.manual_seed(args.seed)
    components = build_random_components(spec)
    encoder = RandomPromptEncoder(int(spec.transformer["text_dim"]), spec.device, spec.dtype)
    for variant in presets:
        yield variant, (random_model(spec, variant, components), encoder)


@dataclass
class _Run:
    """One configuration's stream and what it has made so far."""

    name: str
    guidance: GuidanceMode
    cache: StepCacheSettings | None
    streamer: ChunkStreamer
    frames: list[npt.NDArray[np.uint8]]
    denoise_s: list[float]
    denoise_cpu_s: list[float]
    calls: float = 0.0
    cached: float = 0.0

    def next_chunk(self, timed: bool) -> None:
        start = time.process_time()
        done: list[float] = []

        def on_progress(p: StepProgress) -> None:
            if p.step == p.steps_in_chunk:  # the last step: denoising ends, decoding starts
                done.append(time.process_time())

        chunk = self.streamer.next_chunk(on_progress)
        self.frames.append(chunk.frames)
        self.calls += chunk.extras.get("step_cache_calls", 0.0)
        self.cached += chunk.extras.get("step_cache_cached_calls", 0.0)
        if timed:
            self.denoise_s.append(chunk.timings.transformer_s)
            self.denoise_cpu_s.append(done[-1] - start)


def _runs(
    model: LoadedModel, request: StreamRequest, encoder: Any, cache: StepCacheSettings
) -> list[_Run]:
    runs = []
    for name, guidance, cached in RUNS:
        settings = request.settings.with_overrides(step_cache=cache if cached else None)
        streamer = ChunkStreamer(
            replace(model, guidance=guidance),
            replace(request, settings=settings),
            prompt_encoder=encoder,
        )
        runs.append(_Run(name, guidance, settings.step_cache, streamer, [], [], []))
    return runs


def difference(
    reference: Sequence[npt.NDArray[np.uint8]], frames: Sequence[npt.NDArray[np.uint8]]
) -> tuple[float | None, int]:
    """(PSNR in dB, max absolute error) of uint8 frames; PSNR None where they are identical."""
    ref = np.concatenate(reference).astype(np.float64)
    out = np.concatenate(frames).astype(np.float64)
    mse = float(np.mean((ref - out) ** 2))
    psnr = None if mse == 0 else 10 * math.log10(255.0**2 / mse)
    return psnr, int(np.abs(ref - out).max())


def measure(args: argparse.Namespace) -> list[RunResult]:
    results: list[RunResult] = []
    for variant, (model, encoder) in _models(args, _presets(args.presets)):
        results += _measure_preset(variant, model, encoder, args)
    return results


def _measure_preset(
    variant: Variant, model: LoadedModel, encoder: Any, args: argparse.Namespace
) -> list[RunResult]:
    """The four streams advance in turns, a chunk each, so that a busy machine slows all of
    them alike (streams may share a transformer: step caching ends with each chunk)."""
    request = StreamRequest(
        prompt=PROMPT,
        width=args.width or (640 if args.arch == "14b" else 64),
        height=args.height or (384 if args.arch == "14b" else 64),
        seed=args.seed,
        settings=_settings(variant, model, args),
    )
    runs = _runs(model, request, encoder, args.step_cache)
    for index in range(args.warmup + args.chunks):
        for run in runs:
            start = time.perf_counter()
            run.next_chunk(timed=index >= args.warmup)
            _log(f"{variant.value} {run.name} chunk {index}: {time.perf_counter() - start:.1f} s")
    full = runs[0]
    full_s, full_cpu_s = float(np.mean(full.denoise_s)), float(np.mean(full.denoise_cpu_s))
    results = []
    for run in runs:
        psnr, max_error = difference(full.frames, run.frames)
        denoise_s, cpu_s = float(np.mean(run.denoise_s)), float(np.mean(run.denoise_cpu_s))
        results.append(
            RunResult(
                preset=variant.value,
                run=run.name,
                guidance=run.guidance,
                step_cache=None if run.cache is None else run.cache.describe(),
                denoise_s=round(denoise_s, 4),
                speedup=round(full_s / denoise_s, 3),
                denoise_cpu_s=round(cpu_s, 4),
                cpu_speedup=round(full_cpu_s / cpu_s, 3),
                cached_calls=round(run.cached / run.calls, 3) if run.calls else 0.0,
                psnr_db=None if psnr is None else round(psnr, 2),
                max_error=max_error,
            )
        )
    return results


def table(results: Sequence[RunResult]) -> str:
    head = f"{'preset':6} {'run':15} {'denoise s':>9} {'speedup':>8} {'CPU s':>7} {'speedup':>8} "
    lines = [head + f"{'cached':>7} {'PSNR dB':>8} {'max err':>8}"]
    for r in results:
        psnr = "exact" if r.psnr_db is None else f"{r.psnr_db:.2f}"
        lines.append(
            f"{r.preset:6} {r.run:15} {r.denoise_s:9.3f} {r.speedup:7.2f}x "
            f"{r.denoise_cpu_s:7.3f} {r.cpu_speedup:7.2f}x "
            f"{r.cached_calls:6.0%} {psnr:>8} {r.max_error:8d}"
        )
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "diffusers", "cache-dit")}


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    results = measure(args)
    print(table(results))
    if args.out is not None:
        report = {
            "command": "helios " + shlex.join(sys.argv[1:]),
            "date": started,
            "load_average_before_after": [load_before[0], os.getloadavg()[0]],
            "versions": _versions(),
            "arch": args.arch,
            "device": torch.cuda.get_device_name() if args.arch == "14b" else "cpu",
            "weights": "random: timings and mechanics only, nothing about perceived quality",
            "threads": torch.get_num_threads(),
            "step_cache": args.step_cache.to_json(),
            "results": [asdict(r) for r in results],
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0
