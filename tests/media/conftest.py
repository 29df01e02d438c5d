"""Fixtures for media tests: synthetic frames and a small H.264 MP4 made by our own writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from helios_serve.media.encode import Mp4Writer

Frames = npt.NDArray[np.uint8]


def _gradient(n: int, height: int, width: int) -> Frames:
    """Smooth, slowly moving colour gradients: easy for a lossy codec to keep close."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = x * 200 // max(width - 1, 1) + t % 50
        frames[t, ..., 1] = y * 255 // max(height - 1, 1)
        frames[t, ..., 2] = 255 - x * 255 // max(width - 1, 1)
    return frames


@pytest.fixture
def make_frames() -> Callable[[int, int, int], Frames]:
    """`make_frames(n, height, width)` → gradient frames shaped (n, height, width, 3)."""
    return _gradient


@pytest.fixture(scope="session")
def mp4_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """66 frames of 64x48 at 24 fps, written in two 33-frame chunks."""
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    frames = _gradient(66, 48, 64)
    with Mp4Writer(path, 64, 48, fps=24) as writer:
        writer.write(frames[:33])
        writer.write(frames[33:])
    return path
