"""Segments joined by packet copy: same bytes for the same frames, the frames themselves kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from helios_serve.media.segments import Part, frame_count, iter_frames, join_segments, write_segment


def chunk(seed: int, frames: int = 33) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 96, dtype=np.float32)[None, None, :, None]
    moving = ramp + np.arange(frames, dtype=np.float32)[:, None, None, None] * 2 + seed * 9
    base = np.broadcast_to(moving, (frames, 64, 96, 3))
    return (base + rng.integers(0, 20, base.shape)).clip(0, 255).astype(np.uint8)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decoded(path: Path) -> list[np.ndarray]:
    return list(iter_frames(path))


@pytest.mark.parametrize(("width", "height"), [(96, 64), (224, 128), (352, 192)])
def test_the_same_frames_always_encode_to_the_same_bytes(
    tmp_path: Path, width: int, height: int
) -> None:
    rng = np.random.default_rng(width)
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, None, :, None]
    moving = ramp + np.arange(33, dtype=np.float32)[:, None, None, None] * 2
    base = np.broadcast_to(moving, (33, height, width, 3))
    frames = (base + rng.integers(0, 20, base.shape)).clip(0, 255).astype(np.uint8)
    digests = set()
    for k in range(8):  # x264's mbtree made 8 different files of these in 8 encodes
        path = tmp_path / f"run-{k}.mp4"
        write_segment(path, frames, fps=24)
        digests.add(digest(path))
    assert len(digests) == 1


def test_joined_segments_are_deterministic_and_keep_every_frame(tmp_path: Path) -> None:
    paths = [tmp_path / f"chunk-{k}.mp4" for k in range(3)]
    for k, path in enumerate(paths):
        write_segment(path, chunk(k), fps=24)
    again = tmp_path / "again.mp4"
    write_segment(again, chunk(0), fps=24)
    assert digest(again) == digest(paths[0])

    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    assert join_segments([Part(p) for p in paths], first, fps=24) == 99
    join_segments([Part(p) for p in paths], second, fps=24)
    assert digest(first) == digest(second)
    assert frame_count(first) == 99
    separately = [f for p in paths for f in decoded(p)]
    joined = decoded(first)
    assert len(joined) == 99
    for a, b in zip(joined, separately, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.part"))


def test_a_joined_file_cut_at_a_segment_boundary_joins_again(tmp_path: Path) -> None:
    """What an extension does: the first chunks of a finished video, then new segments."""
    paths = [tmp_path / f"chunk-{k}.mp4" for k in range(4)]
    for k, path in enumerate(paths):
        write_segment(path, chunk(k), fps=24)
    whole = tmp_path / "whole.mp4"
    join_segments([Part(p) for p in paths], whole, fps=24)
    start = tmp_path / "start.mp4"
    join_segments([Part(p) for p in paths[:2]], start, fps=24)
    rebuilt = tmp_path / "rebuilt.mp4"
    join_segments([Part(start), *[Part(p) for p in paths[2:]]], rebuilt, fps=24)
    assert digest(rebuilt) == digest(whole)
    cut = tmp_path / "cut.mp4"
    join_segments([Part(whole, frames=66), Part(paths[2]), Part(paths[3])], cut, fps=24)
    assert digest(cut) == digest(whole)


def test_a_short_last_segment(tmp_path: Path) -> None:
    full, short = tmp_path / "full.mp4", tmp_path / "short.mp4"
    write_segment(full, chunk(0), fps=24)
    write_segment(short, chunk(1, frames=31), fps=24)
    out = tmp_path / "out.mp4"
    assert join_segments([Part(full), Part(short)], out, fps=24) == 64
    assert len(decoded(out)) == 64
