"""Mp4Writer / NpyWriter / open_writer / encode_thumbnail: streaming, atomic, validated."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from helios_serve.errors import InvalidInputError
from helios_serve.media.decode import load_video, probe_video
from helios_serve.media.encode import (
    Mp4Writer,
    NpyWriter,
    encode_thumbnail,
    open_writer,
    video_encoder_name,
)

Frames = npt.NDArray[np.uint8]
MakeFrames = Callable[[int, int, int], Frames]


def _psnr(a: Frames, b: Frames) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def test_bundled_ffmpeg_has_libx264() -> None:
    assert video_encoder_name() == "libx264"


def test_mp4_round_trip_in_two_chunks(tmp_path: Path, make_frames: MakeFrames) -> None:
    frames = make_frames(66, 48, 64)
    path = tmp_path / "out.mp4"
    with Mp4Writer(path, 64, 48, fps=24) as writer:
        writer.write(frames[:33])
        writer.write(frames[33:])
        assert writer.tmp_path.exists()
        assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (66, 64, 48)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert info.fps == pytest.approx(24.0)
    decoded = load_video(path)
    assert _psnr(decoded[0], frames[0]) > 30
    assert _psnr(decoded, frames) > 30


def test_mp4_is_fast_start(tmp_path: Path, make_frames: MakeFrames) -> None:
    path = tmp_path / "out.mp4"
    with Mp4Writer(path, 64, 48) as writer:
        writer.write(make_frames(10, 48, 64))
    data = path.read_bytes()
    # The index (moov) comes before the media data, so playback can start while downloading.
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def _fail_midway(path: Path, frames: Frames) -> None:
    with Mp4Writer(path, 64, 48) as writer:
        writer.write(frames)
        raise RuntimeError("boom")


def test_exception_inside_with_leaves_no_file(tmp_path: Path, make_frames: MakeFrames) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _fail_midway(tmp_path / "out.mp4", make_frames(5, 48, 64))
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_no_file(tmp_path: Path, make_frames: MakeFrames) -> None:
    writer = Mp4Writer(tmp_path / "out.mp4", 64, 48)
    writer.write(make_frames(3, 48, 64))
    writer.abort()
    writer.close()  # no-op after abort
    assert list(tmp_path.iterdir()) == []


def test_closing_without_frames_is_an_error(tmp_path: Path) -> None:
    writer = Mp4Writer(tmp_path / "out.mp4", 64, 48)
    with pytest.raises(ValueError, match="no frames"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("width", "height"), [(63, 48), (64, 47)])
def test_mp4_needs_even_size(tmp_path: Path, width: int, height: int) -> None:
    with pytest.raises(InvalidInputError, match="even width and height"):
        Mp4Writer(tmp_path / "out.mp4", width, height)
    assert list(tmp_path.iterdir()) == []


def test_mp4_checks_its_settings(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="fps"):
        Mp4Writer(tmp_path / "out.mp4", 64, 48, fps=0)
    with pytest.raises(InvalidInputError, match="crf"):
        Mp4Writer(tmp_path / "out.mp4", 64, 48, crf=60)
    with pytest.raises(InvalidInputError, match="does not exist"):
        Mp4Writer(tmp_path / "missing" / "out.mp4", 64, 48)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 48, 64, 3), np.float32),
        np.zeros((2, 48, 64), np.uint8),
        np.zeros((2, 64, 48, 3), np.uint8),
        np.zeros((48, 64, 3), np.uint8),
        np.zeros((2, 48, 64, 4), np.uint8),
    ],
)
def test_write_validates_frames(tmp_path: Path, bad: Frames) -> None:
    with (
        pytest.raises(InvalidInputError, match="frames must be"),
        Mp4Writer(tmp_path / "out.mp4", 64, 48) as writer,
    ):
        writer.write(bad)
    assert list(tmp_path.iterdir()) == []


def test_write_after_close_is_an_error(tmp_path: Path, make_frames: MakeFrames) -> None:
    writer = Mp4Writer(tmp_path / "out.mp4", 64, 48)
    writer.write(make_frames(2, 48, 64))
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(make_frames(2, 48, 64))


def test_write_accepts_non_contiguous_frames(tmp_path: Path, make_frames: MakeFrames) -> None:
    frames = make_frames(4, 96, 128)[:, ::2, ::2]
    path = tmp_path / "out.mp4"
    with Mp4Writer(path, 64, 48) as writer:
        writer.write(frames)
    assert probe_video(path).frames == 4


def test_npy_round_trip(tmp_path: Path, make_frames: MakeFrames) -> None:
    frames = make_frames(66, 48, 64)
    path = tmp_path / "out.npy"
    with NpyWriter(path, 64, 48, total_frames=66) as writer:
        writer.write(frames[:33])
        writer.write(frames[33:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
    np.testing.assert_array_equal(np.load(path), frames)


def test_npy_short_stream_is_trimmed(tmp_path: Path, make_frames: MakeFrames) -> None:
    frames = make_frames(10, 48, 64)
    path = tmp_path / "out.npy"
    with NpyWriter(path, 64, 48, total_frames=66) as writer:
        writer.write(frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
    np.testing.assert_array_equal(np.load(path), frames)


def test_npy_refuses_extra_frames(tmp_path: Path, make_frames: MakeFrames) -> None:
    with (
        pytest.raises(InvalidInputError, match="sized for 5 frames"),
        NpyWriter(tmp_path / "out.npy", 64, 48, total_frames=5) as writer,
    ):
        writer.write(make_frames(6, 48, 64))
    assert list(tmp_path.iterdir()) == []


def test_open_writer_picks_by_suffix(tmp_path: Path, make_frames: MakeFrames) -> None:
    frames = make_frames(4, 48, 64)
    for name in ("a.mp4", "b.NPY"):
        with open_writer(tmp_path / name, 64, 48, fps=24, total_frames=4) as writer:
            writer.write(frames)
    assert probe_video(tmp_path / "a.mp4").frames == 4
    np.testing.assert_array_equal(np.load(tmp_path / "b.NPY"), frames)
    with pytest.raises(InvalidInputError, match=r"\.mp4, \.npy") as info:
        open_writer(tmp_path / "c.gif", 64, 48, fps=24, total_frames=4)
    assert info.value.param == "path"


def test_encode_thumbnail(make_frames: MakeFrames) -> None:
    frame = make_frames(1, 48, 64)[0]
    img = Image.open(io.BytesIO(encode_thumbnail(frame)))
    assert (img.format, img.size) == ("JPEG", (64, 48))
    small = Image.open(io.BytesIO(encode_thumbnail(frame, max_side=32)))
    assert small.size == (32, 24)
    with pytest.raises(InvalidInputError):
        encode_thumbnail(make_frames(2, 48, 64))
