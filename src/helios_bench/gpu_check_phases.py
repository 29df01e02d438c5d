"""The measuring phases of the GPU check (`gpu_check`): diffusers, stream, fast mode, quality."""

from __future__ import annotations

import time
from statistics import fmean, median
from typing import TYPE_CHECKING, Any

import torch

from helios_serve.core.types import FRAMES_PER_CHUNK
from helios_serve.engine import compact_dit
from helios_serve.engine.conditioning import LatentStats
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.precision import (
    check_fast_supported,
    fp8_layer_filter,
    fuse_self_attention,
    probe_fp8,
    quantize_fp8,
)
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest
from helios_serve.engine.vae_decode import ChunkDecoder, DecodeOptions, VaeDecoder

from .gpu_check_decode import decode_variants
from .measure import PeakMemory, synchronize
from .quality import RecordingDecoder, frame_errors, relative_errors
from .runner import PROMPT, BenchConfig, SideResult, measure_diffusers, pipeline_kwargs

if TYPE_CHECKING:
    from .gpu_check import Check

__all__ = [
    "decode_variants",
    "diffusers_compiled",
    "diffusers_eager",
    "quality",
    "stream_exact",
    "stream_fast",
]


def _config(check: Check, name: str, model: LoadedModel) -> BenchConfig:
    a = check.args
    return BenchConfig(
        name=name,
        model=model,
        settings=check.settings,
        height=a.height,
        width=a.width,
        seed=a.seed,
        chunk_counts=(a.diffusers_chunks,),
        warmup=0,
        prompt_encoder=check.encoder,
    )


def _diffusers(check: Check, name: str, vae: Any) -> dict[str, Any]:
    """One warm-up call of one chunk (compiles, if compiled), then one call of N chunks."""
    cfg = _config(check, name, check.model(vae))
    start = time.perf_counter()
    for _ in range(check.args.warmups):
        cfg.model.pipe(num_frames=FRAMES_PER_CHUNK, **pipeline_kwargs(cfg))
    synchronize(check.device)
    warm_s = time.perf_counter() - start
    return {"name": name, "warm_up_call_s": round(warm_s, 3), **_side(measure_diffusers(cfg))}


def _side(side: SideResult) -> dict[str, Any]:
    steady = side.per_chunk[1:] or side.per_chunk
    return {
        "fps_steady": round(side.fps_steady, 3),
        "fps_steady_median": round(side.fps_steady_median, 3),
        "first_chunk_s": round(side.first_chunk_s, 3),
        "mean_transformer_s": round(fmean(c.transformer_s for c in steady), 4),
        "mean_decode_s": round(fmean(c.decode_s for c in steady), 4),
        "mean_wall_s": round(fmean(c.wall_s for c in steady), 4),
        "peak_memory_gb": round(side.peak_memory_gb, 3),
        "per_chunk": [
            {"transformer_s": c.transformer_s, "decode_s": c.decode_s, "wall_s": c.wall_s}
            for c in side.per_chunk
        ],
    }


def diffusers_eager(check: Check) -> dict[str, Any]:
    return _diffusers(check, "diffusers: eager, SDPA, VAE fp32 (stock)", check.vae32)


def diffusers_compiled(check: Check) -> dict[str, Any]:
    compact_dit.install(check.transformer)  # diffusers' calls still take diffusers' code
    wrap_s = check.compile_blocks()
    out = _diffusers(check, "diffusers: compiled blocks, SDPA, VAE bf16", check.vae16)
    return {"compile_wrap_s": round(wrap_s, 3), **out}


def run_stream(
    check: Check, model: LoadedModel, decoder: ChunkDecoder, chunks: int, prefetch: bool
) -> dict[str, Any]:
    """One stream of `chunks` chunks. Serial: per-part times per chunk. Prefetch: chunk k
    decodes while k+1 denoises (the last call only decodes, so it is not a steady chunk)."""
    a = check.args
    request = StreamRequest(PROMPT, a.height, a.width, a.seed, check.settings)
    rows = []
    with PeakMemory(check.device) as memory:
        streamer = ChunkStreamer(model, request, prompt_encoder=check.encoder, decoder=decoder)
        for index in range(chunks):
            synchronize(check.device)
            start = time.perf_counter()
            result = streamer.next_chunk(prefetch=prefetch and index + 1 < chunks)
            wall = time.perf_counter() - start
            t = result.timings
            rows.append({"transformer_s": t.transformer_s, "decode_s": t.decode_s, "wall_s": wall})
        peak = memory.peak_gb()
    steady = rows[1:-1] if prefetch else rows[1:]
    walls = [r["wall_s"] for r in steady]
    return {
        "prefetch": prefetch,
        "fps_steady": round(FRAMES_PER_CHUNK / fmean(walls), 3),
        "fps_steady_median": round(FRAMES_PER_CHUNK / median(walls), 3),
        "first_chunk_s": round(rows[0]["wall_s"], 3),
        "mean_wall_s": round(fmean(walls), 4),
        "mean_transformer_s": round(fmean(r["transformer_s"] for r in steady), 4),
        "mean_decode_s": round(fmean(r["decode_s"] for r in steady), 4),
        "peak_memory_gb": round(peak, 3),
        "per_chunk": rows,
    }


def engine_decoder(check: Check) -> ChunkDecoder:
    """The engine's decode of the engine's VAE (bf16 on a GPU), compiled with --compile-vae."""
    a = check.args
    options = DecodeOptions(
        compile=a.compile_vae and a.compile_backend != "none",
        compile_backend=a.compile_backend if a.compile_backend != "none" else "inductor",
        compile_mode=None if a.compile_mode == "default" else a.compile_mode,
    )
    vae = VaeDecoder(check.vae16, options)
    return ChunkDecoder(vae, LatentStats.from_vae(check.vae16, check.device))


def _stream(check: Check, key: str) -> dict[str, Any]:
    if not check.compiled:
        compact_dit.install(check.transformer)
        check.compile_blocks()
    model = check.model(check.vae16)
    decoder = engine_decoder(check)
    store: list[torch.Tensor] = []
    recording = RecordingDecoder(decoder, store)
    serial = run_stream(check, model, recording, check.args.quality_chunks, prefetch=False)
    check.latents[key] = store
    overlapped = run_stream(check, model, decoder, check.args.chunks, prefetch=True)
    options = decoder.vae_decoder.options
    return {"serial": serial, "overlapped": overlapped, "decode_options": repr(options)}


def stream_exact(check: Check) -> dict[str, Any]:
    return {"name": "stream: exact (bf16)", **_stream(check, "exact")}


def emulate_fp8_weights(transformer: Any, edge_blocks: int) -> list[str]:
    """CPU stand-in for FP8: each chosen weight rounded to e4m3 with a per-row scale and back
    (activations stay float32). Only lets the script run end to end where FP8 cannot."""
    fuse_self_attention(transformer)
    keep = fp8_layer_filter(len(transformer.blocks), edge_blocks)
    names = []
    with torch.no_grad():
        for name, module in transformer.named_modules():
            if keep(module, name):
                w = module.weight
                scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 448.0
                module.weight.copy_((w / scale).to(torch.float8_e4m3fn).to(w.dtype) * scale)
                names.append(name)
    return names


def stream_fast(check: Check) -> dict[str, Any]:
    """FP8 in place (the bf16 phases ran before), compiled again, the same streams."""
    start = time.perf_counter()
    if check.device.type == "cuda":
        check_fast_supported(check.device)
        probe_fp8(check.device)
        layers = quantize_fp8(check.transformer, check.args.fp8_edge_blocks)
        how = "torchao Float8DynamicActivationFloat8WeightConfig(PerRow), e4m3"
    else:
        layers = emulate_fp8_weights(check.transformer, check.args.fp8_edge_blocks)
        how = "EMULATED on the CPU: weights rounded to e4m3 per row, activations float32"
    quantize_s = time.perf_counter() - start
    paths = compact_dit.install(check.transformer)
    paths.clear()
    torch._dynamo.reset()
    check.compiled = False
    out = _stream(check, "fast")
    return {
        "name": "stream: fast (FP8 linears)",
        "fp8": how,
        "fp8_layers": len(layers),
        "fp8_edge_blocks": check.args.fp8_edge_blocks,
        "quantize_s": round(quantize_s, 3),
        **out,
    }


def quality(check: Check) -> dict[str, Any]:
    """Fast against exact, chunk by chunk (each chunk is the next one's history, so errors
    compound): latents, then both decoded by the same decoder."""
    exact, fast = check.latents.get("exact"), check.latents.get("fast")
    if not exact or not fast:
        return {"skipped": "needs the latents of stream_exact and stream_fast"}
    decoder = engine_decoder(check)
    frames = []
    with torch.no_grad():
        for e, f in zip(exact, fast, strict=False):
            a = decoder.video(e.to(check.device))
            b = decoder.video(f.to(check.device))
            frames.append(frame_errors(b, a))
    return {
        "note": "per chunk (chunk 0 is the amplified first): latents of the fast stream against "
        "the exact stream's (same random weights, seed, prompt); frames: both decoded by the "
        "engine's bf16 decoder, compared in [0, 1]. Random weights understate FP8 error (no "
        "outlier channels): a sign-off on real weights must happen where they are.",
        "latents": relative_errors(fast, exact),
        "frames": frames,
    }
