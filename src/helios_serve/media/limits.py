"""Resource limits applied to every uploaded or opened media file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaLimits:
    """Caps checked before and while decoding, so a hostile file cannot exhaust memory or CPU."""

    max_bytes: int = 50 * 1024 * 1024
    """Largest accepted file, in bytes."""

    max_pixels: int = 4096 * 4096
    """Largest accepted frame (width * height), checked from headers before decoding."""

    max_frames: int = 2000
    """Most video frames decoded from one file."""

    max_seconds: float = 120.0
    """Longest accepted video, in seconds of presentation time."""

    max_video_pixels: int = 1 << 30
    """Most pixels decoded from one video in total (about 3 GiB of RGB), so that the frame and
    per-frame caps cannot multiply into an allocation no machine has."""


DEFAULT_LIMITS = MediaLimits()
"""The limits used when a caller passes none."""
