"""Run one configuration through the stream and through diffusers' pipeline, and time both.

Per-chunk attribution for diffusers, which has no per-chunk API: every chunk ends with exactly one
``vae.decode`` call, so chunk k spans from the end of decode k-1 (or the call's start) to the end
of decode k. ``transformer_s`` is the part before the decode (denoising incl. scheduler steps,
the same definition as the stream's ``ChunkTimings``), ``dit_s`` the time inside transformer
forwards only, ``decode_s`` the decode itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean, median
from typing import Any, Protocol

import torch

from helios_serve.core.settings import SamplingSettings
from helios_serve.core.types import FRAMES_PER_CHUNK, Variant
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest
from helios_serve.engine.vae_decode import ChunkDecoder

from .measure import CallLog, NoShims, PeakMemory, TimingShims, synchronize

PROMPT = "a red fox runs through fresh snow under a pale winter sky"


class PromptEncoderLike(Protocol):
    def encode(self, prompt: str, max_sequence_length: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class BenchConfig:
    """One measured configuration: a model, its settings, a size and the stream lengths."""

    name: str
    model: LoadedModel
    settings: SamplingSettings
    height: int
    width: int
    seed: int
    chunk_counts: tuple[int, ...]
    warmup: int = 1
    skip_diffusers: bool = False
    prompt_encoder: PromptEncoderLike | None = None
    """Random embeddings for text-encoder-less models; diffusers then gets `prompt_embeds`."""
    prefetch: bool = False
    """Stream: denoise chunk k+1 while chunk k decodes (``next_chunk(prefetch=True)``). The
    synchronising per-call timers would serialise the two, so this run has no ``dit_s``."""
    on_latents: Callable[[torch.Tensor], None] | None = None
    """Handed to the measured stream's `ChunkStreamer.decoding.on_latents` (the engine's seam)."""
    decoder: Callable[[LoadedModel], ChunkDecoder] | None = None
    """Makes each stream's decoder (default: the model's); the suite records latents so."""


@dataclass(frozen=True)
class ChunkTiming:
    transformer_s: float
    decode_s: float
    total_s: float
    wall_s: float
    """Host time around the whole chunk as a consumer sees it (stream: incl. uint8 frames)."""
    dit_s: float
    dit_calls: int


@dataclass
class SideResult:
    """What one side (stream or diffusers) measured for a configuration."""

    per_chunk: list[ChunkTiming]
    first_chunk_s: float
    total_s: float
    frames: int
    memory_by_chunks: dict[int, float]
    memory_baseline_gb: float
    runs: list[dict[str, float]] = field(default_factory=list)

    @property
    def fps_steady(self) -> float:
        """33 frames over the mean wall time of the chunks after the first."""
        steady = self.per_chunk[1:] or self.per_chunk
        return FRAMES_PER_CHUNK / fmean(c.wall_s for c in steady)

    @property
    def fps_steady_median(self) -> float:
        steady = self.per_chunk[1:] or self.per_chunk
        return FRAMES_PER_CHUNK / median(c.wall_s for c in steady)

    @property
    def fps_end_to_end(self) -> float:
        return self.frames / self.total_s

    @property
    def peak_memory_gb(self) -> float:
        return max(self.memory_by_chunks.values())


def _request(cfg: BenchConfig) -> StreamRequest:
    return StreamRequest(PROMPT, cfg.height, cfg.width, cfg.seed, cfg.settings)


def open_stream(cfg: BenchConfig) -> ChunkStreamer:
    decoder = None if cfg.decoder is None else cfg.decoder(cfg.model)
    streamer: ChunkStreamer = ChunkStreamer(
        cfg.model, _request(cfg), prompt_encoder=cfg.prompt_encoder, decoder=decoder
    )
    streamer.decoding.on_latents = cfg.on_latents
    return streamer


def warm_up(cfg: BenchConfig) -> None:
    """Run `cfg.warmup` stream chunks and a one-chunk diffusers call; results are discarded."""
    if cfg.warmup <= 0:
        return
    streamer = open_stream(cfg)
    for _ in range(cfg.warmup):
        streamer.next_chunk()
    del streamer
    if not cfg.skip_diffusers:
        cfg.model.pipe(num_frames=FRAMES_PER_CHUNK, **pipeline_kwargs(cfg))
    synchronize(cfg.model.device)


def measure_stream(cfg: BenchConfig) -> SideResult:
    """One stream of max(chunk_counts) chunks; the peak memory is read after each count."""
    model, counts = cfg.model, set(cfg.chunk_counts)
    per_chunk: list[ChunkTiming] = []
    memory: dict[int, float] = {}
    first = 0.0
    shims = NoShims() if cfg.prefetch else TimingShims(model.pipe, model.device)
    with PeakMemory(model.device) as mem, shims:
        synchronize(model.device)
        start = time.perf_counter()
        streamer = open_stream(cfg)
        for index in range(max(counts)):
            chunk_start = time.perf_counter()
            result = streamer.next_chunk(prefetch=cfg.prefetch and index + 1 < max(counts))
            chunk_end = time.perf_counter()
            if index == 0:
                first = chunk_end - start
            t = result.timings
            dit_s, calls = shims.log.transformer_between(chunk_start, chunk_end)
            per_chunk.append(
                ChunkTiming(
                    t.transformer_s, t.decode_s, t.total_s, chunk_end - chunk_start, dit_s, calls
                )
            )
            del result  # a real consumer writes the frames out; keeping them would grow memory
            if index + 1 in counts:
                memory[index + 1] = mem.peak_gb()
        total = time.perf_counter() - start
    return SideResult(
        per_chunk, first, total, FRAMES_PER_CHUNK * len(per_chunk), memory, mem.baseline_gb
    )


def pipeline_kwargs(cfg: BenchConfig) -> dict[str, Any]:
    """diffusers `__call__` arguments equal to the stream's settings (without num_frames)."""
    s = cfg.settings
    kwargs: dict[str, Any] = {
        "height": cfg.height,
        "width": cfg.width,
        "guidance_scale": s.guidance_scale,
        "max_sequence_length": s.max_sequence_length,
        "generator": torch.Generator("cpu").manual_seed(cfg.seed),
        "output_type": "np",
    }
    if cfg.prompt_encoder is not None:
        kwargs["prompt_embeds"] = cfg.prompt_encoder.encode(PROMPT, s.max_sequence_length)
        if s.uses_cfg:
            kwargs["negative_prompt_embeds"] = cfg.prompt_encoder.encode(
                s.negative_prompt, s.max_sequence_length
            )
    else:
        kwargs["prompt"] = PROMPT
        kwargs["negative_prompt"] = s.negative_prompt
    if cfg.model.variant is Variant.BASE:
        kwargs["num_inference_steps"] = s.num_inference_steps
    else:
        kwargs.update(
            pyramid_num_inference_steps_list=list(s.pyramid_steps),
            use_zero_init=s.use_zero_init,
            zero_steps=s.zero_steps,
            is_amplify_first_chunk=s.amplify_first_chunk,
        )
    return kwargs


def split_chunks(log: CallLog, start: float) -> list[ChunkTiming]:
    """Per-chunk timings of one diffusers call from its decode and transformer intervals."""
    chunks = []
    previous_end = start
    for decode_start, decode_end in log.decode:
        dit_s, calls = log.transformer_between(previous_end, decode_start)
        total = decode_end - previous_end
        chunks.append(
            ChunkTiming(
                decode_start - previous_end, decode_end - decode_start, total, total, dit_s, calls
            )
        )
        previous_end = decode_end
    return chunks


def _diffusers_run(cfg: BenchConfig, chunks: int) -> tuple[list[ChunkTiming], dict[str, float]]:
    pipe, device = cfg.model.pipe, cfg.model.device
    kwargs = pipeline_kwargs(cfg)
    with PeakMemory(device) as mem, TimingShims(pipe, device) as shims:
        synchronize(device)
        start = time.perf_counter()
        output = pipe(num_frames=FRAMES_PER_CHUNK * chunks, **kwargs)
        synchronize(device)
        end = time.perf_counter()
        frames = int(output.frames[0].shape[0])
        peak = mem.peak_gb()
        del output
    per_chunk = split_chunks(shims.log, start)
    last_decode = shims.log.decode[-1][1] if shims.log.decode else start
    run: dict[str, float] = {
        "chunks": chunks,
        "total_s": end - start,
        "frames": frames,
        "fps": frames / (end - start),
        "postprocess_s": end - last_decode,
        "peak_memory_gb": peak,
        "memory_baseline_gb": mem.baseline_gb,
    }
    return per_chunk, run


def measure_diffusers(cfg: BenchConfig) -> SideResult:
    """One `__call__` per chunk count; per-chunk timings come from the longest call."""
    runs = []
    per_chunk: list[ChunkTiming] = []
    for chunks in sorted(set(cfg.chunk_counts)):
        per_chunk, run = _diffusers_run(cfg, chunks)
        runs.append(run)
    longest = runs[-1]
    return SideResult(
        per_chunk=per_chunk,
        first_chunk_s=longest["total_s"],  # diffusers returns nothing before the end
        total_s=longest["total_s"],
        frames=int(longest["frames"]),
        memory_by_chunks={int(r["chunks"]): r["peak_memory_gb"] for r in runs},
        memory_baseline_gb=longest["memory_baseline_gb"],
        runs=runs,
    )


@dataclass(frozen=True)
class ConfigResult:
    """A measured configuration; holds no model, so the next one can be loaded in its place."""

    name: str
    model_name: str
    variant: Variant
    settings: SamplingSettings
    height: int
    width: int
    transformer_config: dict[str, Any]
    stream: SideResult
    diffusers: SideResult | None


def measure(cfg: BenchConfig, log: Callable[[str], None] | None = None) -> ConfigResult:
    """Warm up, then measure the stream and (unless skipped) diffusers."""
    say = log or (lambda _msg: None)
    say(f"[{cfg.name}] warming up ({cfg.warmup} chunk(s))")
    warm_up(cfg)
    say(f"[{cfg.name}] stream: {max(cfg.chunk_counts)} chunks")
    stream = measure_stream(cfg)
    diffusers = None
    if not cfg.skip_diffusers:
        counts = ", ".join(map(str, sorted(set(cfg.chunk_counts))))
        say(f"[{cfg.name}] diffusers: one call each for {counts} chunks")
        diffusers = measure_diffusers(cfg)
    model = cfg.model
    return ConfigResult(
        cfg.name,
        model.name,
        model.variant,
        cfg.settings,
        cfg.height,
        cfg.width,
        dict(model.pipe.transformer.config),
        stream,
        diffusers,
    )
