"""`helios generate`: one offline video, written chunk by chunk as it is generated."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helios_serve.core.requests import (
    MAX_NUM_FRAMES_STREAMED,
    SamplingChoices,
    check_fps,
    check_prompt,
    frame_size,
    frames_from,
    sampling_settings,
)
from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import ModelInfo
from helios_serve.core.types import FRAMES_PER_CHUNK, Variant
from helios_serve.engine.conditioning import ImageInput, VideoInput
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.service import describe
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
    seconds: int | None = None
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
    """Preset (default: the checkpoint's variant) plus explicit overrides, by the vocabulary."""
    choices = SamplingChoices(
        guidance_scale=opts.guidance,
        num_inference_steps=opts.steps,
        pyramid_steps=opts.pyramid_steps,
        use_cfg_zero_star=opts.use_cfg_zero_star,
        amplify_first_chunk=opts.amplify_first_chunk,
        negative_prompt=opts.negative_prompt,
        max_sequence_length=opts.max_sequence_length,
    )
    return sampling_settings(_info(model), choices, preset=opts.preset)


def _info(model: LoadedModel) -> ModelInfo:
    return describe(model, model.name)


def frames_requested(opts: GenerateOptions) -> int:
    if opts.num_frames is not None and opts.seconds is not None:
        raise InvalidInputError("give --num-frames or --seconds, not both", param="num_frames")
    frames = FRAMES_PER_CHUNK if opts.num_frames is None and opts.seconds is None else None
    return frames or frames_from(
        opts.num_frames, opts.seconds, opts.fps, max_frames=MAX_NUM_FRAMES_STREAMED
    )


def generate_video(
    model: LoadedModel,
    opts: GenerateOptions,
    image: ImageInput | None = None,
    video: VideoInput | None = None,
    show_progress: bool = True,
) -> GenerateSummary:
    """Generate and write the video; the frame count equals what diffusers returns."""
    check_prompt(opts.prompt)
    check_fps(opts.fps)
    width, height = frame_size(_info(model), opts.width, opts.height)
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
