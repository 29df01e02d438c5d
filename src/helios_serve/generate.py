"""`helios generate`: one offline video, written chunk by chunk as it is generated."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.types import FRAMES_PER_CHUNK, Variant
from helios_serve.engine.conditioning import ImageInput, VideoInput
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest, trimmed_frame_count
from helios_serve.errors import InvalidInputError
from helios_serve.media.encode import open_writer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateOptions:
    """The CLI's flags after parsing; `None` means "the preset's / model's default"."""

    prompt: str
    out: Path
    negative_prompt: str | None = None
    preset: Variant | None = None
    steps: int | None = None
    pyramid_steps: tuple[int, ...] | None = None
    guidance: float | None = None
    amplify_first_chunk: bool | None = None
    use_cfg_zero_star: bool | None = None
    num_frames: int | None = None
    seconds: float | None = None
    width: int | None = None
    height: int | None = None
    fps: int = 24
    seed: int = 0
    max_sequence_length: int | None = None


@dataclass(frozen=True)
class GenerateSummary:
    frames: int
    chunks: int
    width: int
    height: int
    seconds_of_video: float
    wall_s: float
    per_chunk_s: float


def resolve_settings(model: LoadedModel, opts: GenerateOptions) -> SamplingSettings:
    """Preset (default: the checkpoint's variant) plus explicit overrides."""
    preset = opts.preset or model.variant
    if (preset is Variant.BASE) != (model.variant is Variant.BASE):
        raise InvalidInputError(
            f"preset '{preset}' needs a {'single-stage' if preset is Variant.BASE else 'pyramid'} "
            f"checkpoint; this one is {model.variant} (drop --preset or pick another model)",
            param="preset",
        )
    if opts.steps is not None and model.variant is not Variant.BASE:
        raise InvalidInputError(
            "--steps is for single-stage (Base) checkpoints; this one is "
            f"{model.variant}: use --pyramid-steps A,B,C",
            param="steps",
        )
    changes: dict[str, Any] = {
        "max_sequence_length": opts.max_sequence_length or model.default_max_sequence_length
    }
    for key, value in (
        ("num_inference_steps", opts.steps),
        ("pyramid_steps", opts.pyramid_steps),
        ("guidance_scale", opts.guidance),
        ("negative_prompt", opts.negative_prompt),
        ("amplify_first_chunk", opts.amplify_first_chunk),
        ("use_cfg_zero_star", opts.use_cfg_zero_star),
    ):
        if value is not None:
            changes[key] = value
    return PRESETS[preset].with_overrides(**changes)


def frames_requested(opts: GenerateOptions) -> int:
    if opts.num_frames is not None and opts.seconds is not None:
        raise InvalidInputError("give --num-frames or --seconds, not both", param="num_frames")
    if opts.seconds is not None:
        if opts.seconds <= 0:
            raise InvalidInputError("--seconds must be positive", param="seconds")
        return max(1, round(opts.seconds * opts.fps))
    frames = FRAMES_PER_CHUNK if opts.num_frames is None else opts.num_frames
    if frames < 1:
        raise InvalidInputError("--num-frames must be at least 1", param="num_frames")
    return frames


def generate_video(
    model: LoadedModel,
    opts: GenerateOptions,
    image: ImageInput | None = None,
    video: VideoInput | None = None,
    show_progress: bool = True,
) -> GenerateSummary:
    """Generate and write the video; the frame count equals what diffusers returns."""
    if opts.fps < 1:
        raise InvalidInputError("--fps must be at least 1", param="fps")
    default_w, default_h = model.default_size
    width, height = opts.width or default_w, opts.height or default_h
    chunks = max(1, math.ceil(frames_requested(opts) / FRAMES_PER_CHUNK))
    keep = trimmed_frame_count(chunks * FRAMES_PER_CHUNK)
    request = StreamRequest(
        prompt=opts.prompt,
        height=height,
        width=width,
        seed=opts.seed,
        settings=resolve_settings(model, opts),
        image=image,
        video=video,
    )
    start = time.perf_counter()
    streamer = ChunkStreamer(model, request)
    bar = _progress_bar(sum(streamer.steps_in_chunk(i) for i in range(chunks)), show_progress)
    written = 0
    with open_writer(opts.out, width, height, opts.fps, keep) as writer:
        for index in range(chunks):
            bar.set_postfix_str(f"chunk {index + 1}/{chunks}")
            chunk = streamer.next_chunk(
                on_progress=lambda _p: bar.update(1), prefetch=index + 1 < chunks
            )
            frames = chunk.frames[: keep - written]
            writer.write(frames)
            written += len(frames)
    bar.close()
    wall = time.perf_counter() - start
    return GenerateSummary(
        frames=written,
        chunks=chunks,
        width=width,
        height=height,
        seconds_of_video=written / opts.fps,
        wall_s=wall,
        per_chunk_s=wall / chunks,
    )


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True)
