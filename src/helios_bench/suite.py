"""The GPU measurement suite: every number issue 8 asks for, in one process and one device call.

``python -m helios_bench.suite --out DIR`` builds the real 14B architecture once (random
bf16 weights on the GPU, the real Wan2.1 VAE) and runs these phases in order, writing
``DIR/suite.json`` after each one, so a run cut short by its time limit keeps what it measured:

1. ``baseline``: eager, PyTorch SDPA, VAE fp32. The stream against diffusers' pipeline for each
   ``--steps`` set (stream lengths 2 and ``--chunks``), written as a `helios bench` report
   (``DIR/baseline.json``). The denoised latents of both sides are kept for phase 5.
2. ``attention``: the stream with each other attention backend (cuDNN, flash SDPA).
3. ``vae``: the VAE in bf16: decode time and the error of its frames against the fp32 VAE on the
   same latents, then the stream with the best backend and the bf16 VAE.
4. ``compile``: regional ``torch.compile`` of the transformer blocks (compile time recorded), the
   stream and diffusers with everything on (``DIR/optimized.json``).
5. ``numerics``: the optimized stream's latents against the eager pipeline's, per chunk.
6. ``overlap``: what decoding chunk k on a second CUDA stream while chunk k+1 denoises would
   give, measured with a harness around the stream's own denoise and decode.
7. ``profile``: one steady chunk under ``torch.profiler``: GPU busy time against wall time and
   the top kernels (``DIR/profile.txt``).

``--arch small`` runs the same phases on a toy transformer on the CPU, to test the script.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helios_serve.core.settings import PRESETS
from helios_serve.core.types import FRAMES_PER_CHUNK, Variant
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest, to_uint8

from .arch import (
    HELIOS_14B_TRANSFORMER,
    WAN21_VAE,
    RandomModelSpec,
    RandomPromptEncoder,
    build_random_components,
    random_model,
)
from .measure import synchronize
from .quality import relative_errors
from .report import build_report, device_description, format_table
from .runner import PROMPT, BenchConfig, ConfigResult, measure

SMALL_TRANSFORMER: dict[str, Any] = {
    **HELIOS_14B_TRANSFORMER,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "ffn_dim": 64,
    "num_layers": 2,
    "text_dim": 32,
    "freq_dim": 16,
    "rope_dim": (4, 6, 6),
}
"""A toy of the 14B architecture for testing the suite on a CPU."""

SMALL_VAE: dict[str, Any] = {**WAN21_VAE, "base_dim": 8}

PHASES = ("baseline", "reference", "attention", "vae", "compile", "numerics", "overlap", "profile")
DEFAULT_PHASES = ("baseline", "attention", "vae", "compile", "numerics", "overlap", "profile")


def _log(message: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Suite:
    """The model, the flags and everything measured so far."""

    args: argparse.Namespace
    device: torch.device
    transformer: Any
    vae: Any
    encoder: RandomPromptEncoder
    results: dict[str, Any] = field(default_factory=dict)
    latents: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    best_backend: str = "native"
    vae_dtype: torch.dtype = torch.float32

    def model(self, variant: Variant = Variant.DISTILLED) -> LoadedModel:
        return random_model(
            RandomModelSpec(self.transformer_config, self.vae_config, self.device),
            variant,
            (self.transformer, self.vae),
            self.best_backend,
        )

    @property
    def transformer_config(self) -> dict[str, Any]:
        return SMALL_TRANSFORMER if self.args.arch == "small" else HELIOS_14B_TRANSFORMER

    @property
    def vae_config(self) -> dict[str, Any]:
        return SMALL_VAE if self.args.arch == "small" else WAN21_VAE

    def config(
        self,
        name: str,
        steps: tuple[int, ...],
        counts: tuple[int, ...],
        diffusers: bool,
        prefetch: bool = False,
    ) -> BenchConfig:
        model = self.model()
        settings = PRESETS[Variant.DISTILLED].with_overrides(
            pyramid_steps=steps, max_sequence_length=self.args.text_tokens
        )
        return BenchConfig(
            name=name,
            model=model,
            settings=settings,
            height=self.args.height,
            width=self.args.width,
            seed=self.args.seed,
            chunk_counts=counts,
            warmup=1,
            skip_diffusers=not diffusers,
            prompt_encoder=self.encoder,
            prefetch=prefetch,
        )

    def save(self) -> None:
        path = self.args.out / "suite.json"
        path.write_text(json.dumps(self.results, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------- latent capture


@contextlib.contextmanager
def capture_pipeline_latents(vae: Any, store: list[torch.Tensor]) -> Iterator[None]:
    """Record diffusers' per-chunk latents, recovered from each ``vae.decode`` input in fp32."""
    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1)
    original = vae.decode

    def decode(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        store.append((z.detach().float().cpu() - mean) / std)
        return original(z, *args, **kwargs)

    vae.decode = decode
    try:
        yield
    finally:
        del vae.decode


# ------------------------------------------------------------------------- phases


def _measure(suite: Suite, cfg: BenchConfig, capture: str | None = None) -> ConfigResult:
    """`measure` with the stream's (and diffusers') latents kept under `capture`."""
    if capture is None:
        return measure(cfg, _log)
    stream: list[torch.Tensor] = []
    pipeline: list[torch.Tensor] = []
    tap = replace(cfg, on_latents=lambda z: stream.append(z.detach().float().cpu()))
    with capture_pipeline_latents(cfg.model.pipe.vae, pipeline):
        result = measure(tap, _log)
    n = max(cfg.chunk_counts)
    # the warm-up chunk(s) come first; the measured stream is the last n decodes of the stream
    suite.latents[f"{capture}/stream"] = stream[-n:]
    if not cfg.skip_diffusers:
        suite.latents[f"{capture}/diffusers"] = pipeline[-n:]
    return result


def _report(suite: Suite, results: list[ConfigResult], name: str) -> dict[str, Any]:
    report = build_report(
        results,
        device=suite.device,
        arch=suite.args.arch,
        command=suite.results["command"],
        settings={
            "width": suite.args.width,
            "height": suite.args.height,
            "chunks": suite.args.chunks,
            "seed": suite.args.seed,
            "text_tokens": suite.args.text_tokens,
        },
        memory_kind="cuda_max_allocated" if suite.device.type == "cuda" else "cpu_rss_delta",
    )
    (suite.args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report), flush=True)
    return report


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    s = result["stream"]
    out = {
        "name": result["name"],
        "stream_fps_steady": s["fps_steady"],
        "stream_first_chunk_s": s["first_chunk_s"],
        "stream_peak_memory_gb": s["peak_memory_gb"],
        "stream_mean_steady_chunk": s["mean_steady_chunk"],
        "stream_tflops": s["tflops"],
    }
    if result["diffusers"] is not None:
        d = result["diffusers"]
        out |= {
            "diffusers_fps_steady": d["fps_steady"],
            "diffusers_first_chunk_s": d["first_chunk_s"],
            "diffusers_peak_memory_gb": d["peak_memory_gb"],
            "diffusers_mean_steady_chunk": d["mean_steady_chunk"],
            "speedup": result["speedup"],
        }
    return out


def phase_baseline(suite: Suite) -> dict[str, Any]:
    counts = tuple(sorted({2, suite.args.chunks}))
    results = []
    for steps in suite.args.steps:
        label = ",".join(map(str, steps))
        cfg = suite.config(f"eager sdpa vae-fp32 [{label}]+amplify", steps, counts, True)
        results.append(_measure(suite, cfg, capture=f"eager[{label}]"))
    report = _report(suite, results, "baseline")
    return {"configs": [_summary(c) for c in report["configs"]]}


@torch.no_grad()
def phase_reference(suite: Suite) -> dict[str, Any]:
    """Eager diffusers (SDPA, fp32 VAE) latents for the numerical check, without timing."""
    from .runner import pipeline_kwargs

    out: dict[str, Any] = {}
    for steps in suite.args.steps:
        label = ",".join(map(str, steps))
        cfg = suite.config(f"reference [{label}]", steps, (suite.args.chunks,), True)
        store: list[torch.Tensor] = []
        start = time.perf_counter()
        with capture_pipeline_latents(suite.vae, store):
            cfg.model.pipe(num_frames=FRAMES_PER_CHUNK * suite.args.chunks, **pipeline_kwargs(cfg))
        suite.latents[f"eager[{label}]/diffusers"] = store
        out[label] = {"chunks": len(store), "seconds": time.perf_counter() - start}
    return out


def _stream_only(suite: Suite, name: str, steps: tuple[int, ...]) -> dict[str, Any]:
    cfg = suite.config(name, steps, (suite.args.chunks,), False)
    result = measure(cfg, _log)
    report = build_report(
        [result],
        device=suite.device,
        arch=suite.args.arch,
        command=suite.results["command"],
        settings={},
        memory_kind="cuda_max_allocated" if suite.device.type == "cuda" else "cpu_rss_delta",
    )
    return _summary(report["configs"][0])


def phase_attention(suite: Suite) -> dict[str, Any]:
    steps = suite.args.steps[0]
    base = suite.results.get("baseline", {}).get("configs", [{}])[0]
    fps = {"native": base.get("stream_fps_steady", 0.0)}
    out: dict[str, Any] = {"native": base}
    for backend in suite.args.backends:
        if backend == "native":
            continue
        suite.best_backend = backend
        try:
            summary = _stream_only(suite, f"eager {backend} vae-fp32", steps)
        except Exception as exc:
            out[backend] = {"error": f"{type(exc).__name__}: {exc}"}
            _log(f"attention backend {backend} failed: {exc}")
            continue
        out[backend] = summary
        fps[backend] = summary["stream_fps_steady"]
    suite.best_backend = max(fps, key=lambda k: fps[k])
    out["best"] = suite.best_backend
    _log(f"attention: {fps} -> {suite.best_backend}")
    return out


def _time_decode(vae: Any, z: torch.Tensor, repeats: int) -> tuple[torch.Tensor, float]:
    """Median seconds of one `vae.decode` of `z`, and its output frames."""
    times = []
    video = vae.decode(z, return_dict=False)[0]
    for _ in range(repeats):
        synchronize(z.device)
        start = time.perf_counter()
        video = vae.decode(z, return_dict=False)[0]
        synchronize(z.device)
        times.append(time.perf_counter() - start)
    return video, float(np.median(times))


@torch.no_grad()
def phase_vae(suite: Suite) -> dict[str, Any]:
    # a steady chunk's latents from an earlier phase (stream or reference pipeline)
    key = sorted(suite.latents, key=lambda k: not k.endswith("/stream"))[0]
    latents = suite.latents[key][1].to(suite.device)
    cfg = suite.vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(suite.device)
    std = torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(suite.device)
    z = latents * std + mean
    vae16 = copy.deepcopy(suite.vae).to(torch.bfloat16)
    repeats = suite.args.repeats
    ref, t32 = _time_decode(suite.vae, z, repeats)
    got, t16 = _time_decode(vae16, z.to(torch.bfloat16), repeats)
    ref01 = (ref.float() / 2 + 0.5).clamp(0, 1)
    got01 = (got.float() / 2 + 0.5).clamp(0, 1)
    diff = (got01 - ref01).abs()
    mse = float((diff**2).mean())
    u8 = (to_uint8(got01.cpu().numpy()).astype(np.int16) - to_uint8(ref01.cpu().numpy())).__abs__()
    out: dict[str, Any] = {
        "decode_s_fp32": t32,
        "decode_s_bf16": t16,
        "frames_max_abs_err": float(diff.max()),
        "frames_mean_abs_err": float(diff.mean()),
        "psnr_db": 10 * math.log10(1.0 / mse) if mse > 0 else math.inf,
        "uint8_max_diff": int(u8.max()),
        "uint8_mean_diff": float(u8.mean()),
        "note": "one steady chunk's latents from an earlier phase, decoded by the fp32 VAE and by "
        "a bf16 copy; frames in [0, 1]",
        "latents_from": key,
    }
    out["channels_last_3d"] = (
        _channels_last_experiment(vae16, z.to(torch.bfloat16), got, repeats)
        if suite.device.type == "cuda"
        else {"skipped": "a cuDNN layout experiment (and bf16 conv3d is slow on a CPU)"}
    )
    del vae16, ref, got
    host = ref01.permute(0, 2, 3, 4, 1)[0].cpu().numpy()
    start = time.perf_counter()
    to_uint8(host)
    out["host_to_uint8_s"] = time.perf_counter() - start
    suite.vae.to(torch.bfloat16)
    suite.vae_dtype = torch.bfloat16
    if suite.args.vae_stream:
        out["stream"] = _stream_only(
            suite, f"eager {suite.best_backend} vae-bf16", suite.args.steps[0]
        )
    return out


def _channels_last_experiment(
    vae: Any, z: torch.Tensor, reference: torch.Tensor, repeats: int
) -> dict[str, Any]:
    """Decode time with the 5-D conv weights and the input in channels_last_3d."""
    try:
        with torch.no_grad():
            for module in vae.modules():
                weight = getattr(module, "weight", None)
                if isinstance(weight, torch.nn.Parameter) and weight.dim() == 5:
                    weight.data = weight.data.contiguous(memory_format=torch.channels_last_3d)
            video, seconds = _time_decode(
                vae, z.contiguous(memory_format=torch.channels_last_3d), repeats
            )
        return {
            "decode_s": seconds,
            "max_abs_diff_vs_bf16": float((video.float() - reference.float()).abs().max()),
        }
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def phase_compile(suite: Suite) -> dict[str, Any]:
    mode = suite.args.compile_mode
    kwargs: dict[str, Any] = {"fullgraph": True, "dynamic": False}
    if mode != "default":
        kwargs["mode"] = mode
    suite.transformer.compile_repeated_blocks(**kwargs)
    # the first chunk triggers one compilation per pyramid stage shape
    model = suite.model()
    settings = PRESETS[Variant.DISTILLED].with_overrides(
        pyramid_steps=suite.args.steps[0], max_sequence_length=suite.args.text_tokens
    )
    request = StreamRequest(PROMPT, suite.args.height, suite.args.width, suite.args.seed, settings)
    start = time.perf_counter()
    streamer = ChunkStreamer(model, request, prompt_encoder=suite.encoder)
    streamer.next_chunk()
    synchronize(suite.device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    streamer.next_chunk()
    synchronize(suite.device)
    second = time.perf_counter() - start
    del streamer
    out: dict[str, Any] = {
        "torch_compile": {"regional": True, **kwargs, "mode": mode},
        "first_chunk_with_compilation_s": first,
        "next_chunk_s": second,
        "compile_s_estimate": first - 2 * second,
        "note": "compile_s_estimate: the first (amplified, so ~2x) chunk minus twice a compiled "
        "chunk",
    }
    suite.results["compile"] = out
    suite.save()
    counts = tuple(sorted({2, suite.args.chunks}))
    results = []
    for i, steps in enumerate(suite.args.steps):
        label = ",".join(map(str, steps))
        name = f"compiled {suite.best_backend} vae-bf16 [{label}]+amplify"
        if i == 0 and suite.args.prefetch:  # the same configuration without the overlap
            cfg = suite.config(name, steps, (suite.args.chunks,), False)
            results.append(_measure(suite, cfg, capture=f"optimized-serial[{label}]"))
        if suite.args.prefetch:
            name += " overlap-decode"
        cfg = suite.config(name, steps, counts, True, prefetch=suite.args.prefetch)
        results.append(_measure(suite, cfg, capture=f"optimized[{label}]"))
    report = _report(suite, results, "optimized")
    out["configs"] = [_summary(c) for c in report["configs"]]
    return out


def phase_numerics(suite: Suite) -> dict[str, Any]:
    out: dict[str, Any] = {
        "note": "per chunk, latents after denoising: max |a-b| / max |ref|, mean |a-b| / mean "
        "|ref|; ref = diffusers' eager pipeline (SDPA, fp32 VAE) with the same weights and seed"
    }
    for steps in suite.args.steps:
        label = ",".join(map(str, steps))
        ref = suite.latents.get(f"eager[{label}]/diffusers")
        if ref is None:
            continue
        for side in ("eager", "optimized"):
            got = suite.latents.get(f"{side}[{label}]/stream")
            if got is not None:
                out[f"{side} stream vs eager diffusers [{label}]"] = relative_errors(got, ref)
        serial = suite.latents.get(f"optimized-serial[{label}]/stream")
        overlapped = suite.latents.get(f"optimized[{label}]/stream")
        if serial is not None and overlapped is not None:
            out[f"overlap-decode stream vs serial stream [{label}]"] = relative_errors(
                overlapped, serial
            )
        opt = suite.latents.get(f"optimized[{label}]/diffusers")
        if opt is not None:
            out[f"optimized diffusers vs eager diffusers [{label}]"] = relative_errors(opt, ref)
    return out


@torch.no_grad()
def phase_overlap(suite: Suite) -> dict[str, Any]:
    """Serial chunk time against decode(k) on a side stream while chunk k+1 denoises."""
    if suite.device.type != "cuda":
        return {"skipped": "needs CUDA streams"}
    model = suite.model()
    settings = PRESETS[Variant.DISTILLED].with_overrides(
        pyramid_steps=suite.args.steps[0], max_sequence_length=suite.args.text_tokens
    )
    request = StreamRequest(PROMPT, suite.args.height, suite.args.width, suite.args.seed, settings)
    streamer = ChunkStreamer(model, request, prompt_encoder=suite.encoder)
    streamer.next_chunk()
    n = suite.args.chunks
    synchronize(suite.device)
    start = time.perf_counter()
    for _ in range(n):
        to_uint8(streamer.decode(_denoise(streamer)))
    synchronize(suite.device)
    serial = (time.perf_counter() - start) / n

    side = torch.cuda.Stream(suite.device)
    pending = _denoise(streamer)
    synchronize(suite.device)
    start = time.perf_counter()
    for _ in range(n):
        side.wait_stream(torch.cuda.current_stream(suite.device))
        with torch.cuda.stream(side):
            pending.record_stream(side)
            scaled = pending.to(suite.vae.dtype) * _std(suite) + _mean(suite)
            video = suite.vae.decode(scaled, return_dict=False)[0]
            frames = ((video.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        pending = _denoise(streamer)
        side.synchronize()
        frames.cpu()
    synchronize(suite.device)
    overlapped = (time.perf_counter() - start) / n
    return {
        "serial_chunk_s": serial,
        "overlapped_chunk_s": overlapped,
        "serial_fps": FRAMES_PER_CHUNK / serial,
        "overlapped_fps": FRAMES_PER_CHUNK / overlapped,
        "note": "harness: decode of chunk k (and uint8 conversion on the GPU) on a second CUDA "
        "stream while chunk k+1 denoises on the default stream; serial = denoise then decode "
        "then host uint8, as the engine does today",
    }


def _mean(suite: Suite) -> torch.Tensor:
    c = suite.vae.config
    return torch.tensor(c.latents_mean).view(1, c.z_dim, 1, 1, 1).to(suite.device, suite.vae.dtype)


def _std(suite: Suite) -> torch.Tensor:
    c = suite.vae.config
    return torch.tensor(c.latents_std).view(1, c.z_dim, 1, 1, 1).to(suite.device, suite.vae.dtype)


def _denoise(streamer: ChunkStreamer) -> torch.Tensor:
    latents = streamer._denoise_chunk(lambda *_: None)
    streamer._commit_chunk(latents)
    return latents


def phase_profile(suite: Suite) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    model = suite.model()
    settings = PRESETS[Variant.DISTILLED].with_overrides(
        pyramid_steps=suite.args.steps[0], max_sequence_length=suite.args.text_tokens
    )
    request = StreamRequest(PROMPT, suite.args.height, suite.args.width, suite.args.seed, settings)
    streamer = ChunkStreamer(model, request, prompt_encoder=suite.encoder)
    prefetch = bool(suite.args.prefetch)
    streamer.next_chunk(prefetch=prefetch)
    streamer.next_chunk(prefetch=prefetch)
    activities = [ProfilerActivity.CPU]
    if suite.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    synchronize(suite.device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        streamer.next_chunk(prefetch=prefetch)
        synchronize(suite.device)
    wall = time.perf_counter() - start
    sort = "cuda_time_total" if suite.device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=70)
    (suite.args.out / "profile.txt").write_text(table + "\n")
    import re

    found = re.search(r"Self CUDA time total: ([0-9.]+)(ms|s|us)", table)
    scale = {"s": 1e6, "ms": 1e3, "us": 1.0}
    kernel_us = float(found.group(1)) * scale[found.group(2)] if found else 0.0
    return {
        "wall_s": wall,
        "gpu_kernel_s": kernel_us / 1e6,
        "gpu_busy_fraction": kernel_us / 1e6 / wall if wall > 0 else None,
        "prefetch": prefetch,
        "note": "one steady chunk of the optimized configuration; gpu_kernel_s: the profiler's "
        "self CUDA time total (kernels on both streams, so it can exceed wall_s with the overlap)"
        "; profiler overhead is included in wall_s",
    }


PHASE_FUNCTIONS: dict[str, Callable[[Suite], dict[str, Any]]] = {
    "baseline": phase_baseline,
    "reference": phase_reference,
    "attention": phase_attention,
    "vae": phase_vae,
    "compile": phase_compile,
    "numerics": phase_numerics,
    "overlap": phase_overlap,
    "profile": phase_profile,
}


# ------------------------------------------------------------------------- entry point


def _steps_list(text: str) -> list[tuple[int, ...]]:
    return [tuple(int(x) for x in part.split(",")) for part in text.split(";") if part]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m helios_bench.suite", description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arch", choices=("14b", "small"), default="14b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--chunks", type=int, default=4, help="stream length measured (default 4)")
    p.add_argument("--steps", type=_steps_list, default=_steps_list("1,1,1;2,2,2"))
    p.add_argument("--backends", default="native,_native_cudnn,_native_flash")
    p.add_argument("--compile-mode", default="default")
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repeats", type=int, default=3, help="vae phase: timed decodes per variant (median)"
    )
    p.add_argument("--phases", default=",".join(DEFAULT_PHASES))
    p.add_argument(
        "--prefetch",
        action="store_true",
        help="compile phase: also measure the engine's decode overlap (next_chunk(prefetch=True))",
    )
    p.add_argument(
        "--no-vae-stream",
        dest="vae_stream",
        action="store_false",
        help="vae phase: skip the stream measurement with the bf16 VAE",
    )
    args = p.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    args.phases = [x for x in args.phases.split(",") if x]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}")
    return args


def matmul_ceiling(device: torch.device, n: int = 8192, repeats: int = 10) -> float:
    """bf16 n x n x n matrix product rate on random data: the chip's practical ceiling."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    end.synchronize()
    return float(2 * n**3 * repeats / (start.elapsed_time(end) / 1e3) / 1e12)


def build(args: argparse.Namespace) -> Suite:
    device = torch.device(args.device)
    small = args.arch == "small"
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    spec = RandomModelSpec(
        SMALL_TRANSFORMER if small else HELIOS_14B_TRANSFORMER,
        SMALL_VAE if small else WAN21_VAE,
        device,
        dtype=dtype,
    )
    torch.manual_seed(args.seed)
    transformer, vae = build_random_components(spec)
    text_dim = int(spec.transformer["text_dim"])
    return Suite(args, device, transformer, vae, RandomPromptEncoder(text_dim, device, dtype))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    suite = build(args)
    import diffusers

    suite.results = {
        "tool": "helios_bench.suite",
        "command": " ".join(["python -m helios_bench.suite", *(argv or sys.argv[1:])]),
        "device": device_description(suite.device),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_s": time.perf_counter() - start,
    }
    if suite.device.type == "cuda":
        suite.results["cuda"] = torch.version.cuda
        suite.results["cudnn"] = torch.backends.cudnn.version()
        suite.results["matmul_bf16_tflops"] = matmul_ceiling(suite.device)
    suite.save()
    for phase in args.phases:
        _log(f"phase {phase}")
        t0 = time.perf_counter()
        try:
            suite.results[phase] = PHASE_FUNCTIONS[phase](suite) | {
                "phase_s": time.perf_counter() - t0
            }
        except Exception as exc:
            traceback.print_exc()
            suite.results[phase] = {"error": f"{type(exc).__name__}: {exc}"}
        suite.save()
        _log(f"phase {phase} done in {time.perf_counter() - t0:.1f} s")
    print(
        json.dumps(
            {k: v for k, v in suite.results.items() if k != "numerics"}, indent=1, default=str
        )[:6000]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
