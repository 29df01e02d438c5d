"""Which chunks a job makes and which pieces its MP4 is joined from (pure: no I/O).

Chunk indices are the stream's own: an extension that continues a finished video of 3 chunks
from its saved state makes chunks 3, 4, ...; every other job starts at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from helios_serve.core.spec import chunks_for, delivered_frames
from helios_serve.core.types import FRAMES_PER_CHUNK
from helios_serve.jobs.files import TAIL_NAME, VIDEO_NAME
from helios_serve.jobs.models import GenerationSpec


@dataclass(frozen=True)
class BasePiece:
    """A file from the extension's base folder and how many of its first frames to take."""

    name: str
    frames: int | None = None


@dataclass(frozen=True)
class JobPlan:
    first_chunk: int
    end_chunk: int
    """One past the last chunk to make."""
    own_frames: int
    """Frames of the made chunks that reach the video (the last chunk may be cut short)."""
    base: tuple[BasePiece, ...] = ()
    """What the video opens with before the made chunks (an extension's source)."""
    v2v_base: bool = False
    """The source's frames are re-encoded as one base segment (extension from frames)."""

    @property
    def chunks(self) -> int:
        return self.end_chunk - self.first_chunk

    @property
    def last_chunk(self) -> int:
        return self.end_chunk - 1

    def frames_kept(self, index: int) -> int:
        """Frames of chunk `index` that reach the video."""
        before = (index - self.first_chunk) * FRAMES_PER_CHUNK
        return max(0, min(FRAMES_PER_CHUNK, self.own_frames - before))

    def is_trimmed(self, index: int) -> bool:
        return self.frames_kept(index) < FRAMES_PER_CHUNK

    def frames_through(self, index: int) -> int:
        """Frames of the made chunks up to and including `index` that reach the video."""
        return sum(self.frames_kept(k) for k in range(self.first_chunk, index + 1))


def plan_for(spec: GenerationSpec) -> JobPlan:
    ext = spec.extension
    if ext is None:
        return JobPlan(0, chunks_for(spec.num_frames), delivered_frames(spec.num_frames))
    own = spec.delivered_frames - ext.base_frames
    if ext.mode == "state":
        # the source's MP4 up to its last chunk, then that chunk whole from its tail (the MP4
        # may end cut short); the new chunks follow it, the last one cut at the new end
        base = (
            BasePiece(VIDEO_NAME, ext.base_frames - FRAMES_PER_CHUNK),
            BasePiece(TAIL_NAME),
        )
        end = ext.base_chunks + chunks_for(own)
        return JobPlan(ext.base_chunks, end, own, base)
    return JobPlan(0, chunks_for(own), own, v2v_base=True)
