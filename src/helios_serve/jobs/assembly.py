"""A job's files as it runs and when it ends: chunk segments and states, then the final MP4.

Blocking file work, meant for `asyncio.to_thread`. The order of writes is what makes a crash
harmless: a chunk's segment (and the thumbnail after chunk 0) is published before that
chunk's stream state, so a saved state always has its frames on disk; the finished video,
its tail and final state are published before the job is marked completed, and the working
files are removed only after that.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from helios_serve.core.types import FRAMES_PER_CHUNK
from helios_serve.jobs import digests
from helios_serve.jobs.files import (
    SPRITESHEET_NAME,
    STATE_NAME,
    TAIL_NAME,
    THUMBNAIL_NAME,
    VIDEO_NAME,
    JobFiles,
)
from helios_serve.jobs.plan import JobPlan
from helios_serve.media.encode import Mp4Writer, encode_thumbnail
from helios_serve.media.segments import Part, iter_frames, join_segments, write_segment
from helios_serve.media.sprite import SpriteCollector

V2V_CONTEXT_FRAMES = 3 * FRAMES_PER_CHUNK
"""Frames of a source given to a V2V extension: its last three chunks' worth, more than the
19 latent frames of history the stream keeps."""

BASE_SEGMENT = "base.mp4"


@dataclass(frozen=True)
class SavedChunk:
    """What saving one chunk cost: the state's size and the time to write everything."""

    checkpoint_bytes: int
    seconds: float


def center_crop(
    frames: npt.NDArray[np.uint8], size: tuple[int, int] | None
) -> npt.NDArray[np.uint8]:
    """Frames (T, H, W, 3) cut to (width, height) around their centre; as they are if None."""
    if size is None:
        return frames
    width, height = size
    top = (frames.shape[1] - height) // 2
    left = (frames.shape[2] - width) // 2
    return np.ascontiguousarray(frames[:, top : top + height, left : left + width])


def pad_center(frames: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """`center_crop` undone: frames (T, h, w, 3) smaller than (width, height) extended to it
    by repeating their edge pixels, the original in the middle. An extension generated larger
    than its video then continues it in place (the cut new frames line up with the old ones)."""
    _, h, w, _ = frames.shape
    if (w, h) == (width, height) or w > width or h > height:
        return frames
    top, left = (height - h) // 2, (width - w) // 2
    pad = ((0, 0), (top, height - h - top), (left, width - w - left), (0, 0))
    return np.pad(frames, pad, mode="edge")


def save_chunk(
    files: JobFiles,
    job_id: str,
    plan: JobPlan,
    index: int,
    frames: npt.NDArray[np.uint8],
    fps: int,
    checkpoint: bytes,
    *,
    thumbnail: bool,
) -> SavedChunk:
    """Publish chunk `index`: its segment (and a cut copy if it is the trimmed last one), the
    thumbnail when asked, then the stream state after it."""
    start = time.perf_counter()
    files.chunks_dir(job_id).mkdir(parents=True, exist_ok=True)
    segment = files.segment_path(job_id, index)
    write_segment(segment, frames, fps)
    digests.seal(segment, digests.segment_label(index))
    kept = plan.frames_kept(index)
    if kept < len(frames):
        trimmed = files.segment_path(job_id, index, trimmed=True)
        write_segment(trimmed, frames[:kept], fps)
        digests.seal(trimmed, digests.segment_label(index, trimmed=True))
    if thumbnail:
        files.write_bytes(job_id, THUMBNAIL_NAME, encode_thumbnail(frames[0]))
    files.save_checkpoint(job_id, index, checkpoint)
    return SavedChunk(len(checkpoint), time.perf_counter() - start)


def prepare_v2v_base(files: JobFiles, job_id: str, fps: int) -> npt.NDArray[np.uint8]:
    """Re-encode the source's frames as the base segment; returns its last frames (the V2V
    context). Streams frame by frame: a long source is never held in memory."""
    source = files.base_path(job_id, VIDEO_NAME)
    target = files.chunks_dir(job_id) / BASE_SEGMENT
    target.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[npt.NDArray[np.uint8]] = deque(maxlen=V2V_CONTEXT_FRAMES)
    writer: Mp4Writer | None = None
    try:
        for frame in iter_frames(source):
            if writer is None:
                writer = Mp4Writer(target, frame.shape[1], frame.shape[0], fps=fps)
            writer.write(frame[None])
            tail.append(frame)
        if writer is None:
            raise ValueError("the source video has no frames")
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return np.stack(tail)


def v2v_context(files: JobFiles, job_id: str) -> npt.NDArray[np.uint8]:
    """The last frames of an already written base segment (a resumed V2V extension)."""
    tail: deque[npt.NDArray[np.uint8]] = deque(maxlen=V2V_CONTEXT_FRAMES)
    tail.extend(iter_frames(files.chunks_dir(job_id) / BASE_SEGMENT))
    return np.stack(tail)


def has_v2v_base(files: JobFiles, job_id: str) -> bool:
    return (files.chunks_dir(job_id) / BASE_SEGMENT).is_file()


def assemble(files: JobFiles, job_id: str, plan: JobPlan, fps: int, *, extension: bool) -> int:
    """Join the video, write its spritesheet, publish tail, final state (and an extension's
    thumbnail); returns the video's frame count. Idempotent: safe to run again."""
    parts = [Part(files.base_path(job_id, p.name), p.frames) for p in plan.base]
    if plan.v2v_base:
        parts.append(Part(files.chunks_dir(job_id) / BASE_SEGMENT))
    last = plan.last_chunk
    parts += [Part(files.segment_path(job_id, k)) for k in range(plan.first_chunk, last)]
    parts.append(Part(files.segment_path(job_id, last, trimmed=plan.is_trimmed(last))))
    joined = files.chunks_dir(job_id) / VIDEO_NAME
    frames = join_segments(parts, joined, fps)
    sprites = SpriteCollector(frames)
    for frame in iter_frames(joined):
        sprites.add(frame[None])
    files.write_bytes(job_id, SPRITESHEET_NAME, sprites.render_jpeg())
    # links, not moves: until the job is marked completed, the working files must stay whole
    _link(files.segment_path(job_id, last), files.file_path(job_id, TAIL_NAME))
    state = files.checkpoint_path(job_id, last)
    _link(state, files.file_path(job_id, STATE_NAME))
    _link(digests.sidecar(state), digests.sidecar(files.file_path(job_id, STATE_NAME)))
    thumbnail = files.base_path(job_id, THUMBNAIL_NAME)
    if extension and thumbnail.is_file():  # the stitched video opens with the source's frames
        _link(thumbnail, files.file_path(job_id, THUMBNAIL_NAME))
    files.publish(joined, job_id, VIDEO_NAME)
    return frames


def _link(source: Path, target: Path) -> None:
    """Make `target` the file `source` is, replacing any earlier one."""
    tmp = target.with_name(target.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:  # another filesystem, or links not allowed
        tmp.write_bytes(source.read_bytes())
    os.replace(tmp, target)
