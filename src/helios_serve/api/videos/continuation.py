"""How a new job continues a finished video: an extension, or the remix of one (pure: no I/O).

A video of ours is continued from its saved final state when it has one (and was made by the
served model): the new chunks are exactly those its stream would have made next. The new video
opens with the source's frames up to its last chunk and that chunk whole (its MP4 may end cut
short), so its base can be a few frames longer than the source's video; the new part is cut so
that the whole is the source's length plus what was asked (`seconds` in the answer is then the
source's plus the request's). Without a state (made before states were kept, or by another
model) the source's frames condition a V2V stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from helios_serve.core.types import FRAMES_PER_CHUNK
from helios_serve.jobs.files import (
    STATE_DIGEST_NAME,
    STATE_NAME,
    TAIL_NAME,
    THUMBNAIL_NAME,
    VIDEO_NAME,
)
from helios_serve.jobs.models import Extension, Job
from helios_serve.jobs.plan import plan_for

STATE_FILES = (STATE_NAME, TAIL_NAME)
"""What a video needs to be continued from its state."""
STATE_BASE = (VIDEO_NAME, STATE_NAME, STATE_DIGEST_NAME, TAIL_NAME, THUMBNAIL_NAME)
FRAMES_BASE = (VIDEO_NAME, THUMBNAIL_NAME)


@dataclass(frozen=True)
class Continuation:
    """The new job's extension, the source files its base copies, and its whole length."""

    extension: Extension
    base_names: tuple[str, ...]
    num_frames: int


def state_base_frames(source: Job) -> int:
    """Frames an extension from `source`'s state opens with: every chunk of its video whole.

    Counted from chunks, not from the delivered length, so videos made when lengths were
    trimmed to 4k+1 frames are continued right as well."""
    ext = source.spec.extension
    opening = 0 if ext is None else ext.base_frames
    return opening + FRAMES_PER_CHUNK * plan_for(source.spec).chunks


def continue_video(source: Job, added: int, *, from_state: bool) -> Continuation:
    """`source` (completed) followed by `added` frames; `from_state` when its state is usable."""
    delivered = source.num_frames_delivered
    if not from_state:
        return Continuation(Extension(source.id, "v2v", delivered), FRAMES_BASE, delivered + added)
    base = state_base_frames(source)
    extension = Extension(source.id, "state", base, plan_for(source.spec).end_chunk)
    # at least one new frame, even when the source's cut-off tail is longer than `added`
    return Continuation(extension, STATE_BASE, max(delivered + added, base + 1))


def continue_frames(frames: int, added: int) -> Continuation:
    """An uploaded video that is none of ours, `frames` long, followed by `added` frames."""
    return Continuation(Extension(None, "v2v", frames), (), frames + added)
