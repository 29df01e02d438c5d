"""Caps on what one `POST /v1/videos` may ask for or upload."""

from __future__ import annotations

from dataclasses import dataclass, field

from helios_serve.core.requests import MAX_SIDE
from helios_serve.core.types import FRAMES_PER_CHUNK
from helios_serve.media.limits import MediaLimits


@dataclass(frozen=True)
class RequestLimits:
    """Checked before anything is queued, so no request reaches the GPU just to fail there."""

    max_body_bytes: int = 60 * 1024 * 1024
    """Whole request body (multipart or JSON). Over it: 413 without reading the rest."""

    max_side: int = MAX_SIDE
    """Largest width or height, in pixels."""

    max_num_frames: int = FRAMES_PER_CHUNK * 120
    """Most frames one job may ask for (120 chunks)."""

    max_fps: int = 60

    max_fields: int = 64
    """Most text fields in a form (bracket-flattened `extra_params` lists count per item)."""

    max_files: int = 1
    """Most file parts in a multipart form: `input_reference` only."""

    max_part_size: int = 256 * 1024
    """Largest text part of a form, in bytes."""

    media: MediaLimits = field(default_factory=MediaLimits)
    """Caps for `input_reference`: `media.max_bytes` is the upload cap (413 above it)."""


DEFAULT_REQUEST_LIMITS = RequestLimits()
