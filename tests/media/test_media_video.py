"""load_video / probe_video: good containers decode; playlists, truncation and overruns do not."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from helios_serve.errors import InvalidInputError
from helios_serve.media.decode import load_video, probe_video
from helios_serve.media.limits import MediaLimits

Frames = npt.NDArray[np.uint8]


def _write_with_pyav(path: Path, fmt: str, frames: Frames) -> None:
    """A video written straight through PyAV (MPEG-4 part 2), to test other containers."""
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_mp4_decodes_every_frame(mp4_path: Path) -> None:
    for source in (mp4_path, mp4_path.read_bytes()):
        frames = load_video(source)
        assert frames.dtype == np.uint8
        assert frames.shape == (66, 48, 64, 3)


def test_probe_counts_decoded_frames(mp4_path: Path) -> None:
    info = probe_video(mp4_path)
    assert (info.frames, info.width, info.height) == (66, 64, 48)
    assert info.fps == pytest.approx(24.0)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")


@pytest.mark.parametrize(("fmt", "suffix"), [("matroska", ".mkv"), ("avi", ".avi")])
def test_other_containers_decode(
    tmp_path: Path, make_frames: Callable[[int, int, int], Frames], fmt: str, suffix: str
) -> None:
    path = tmp_path / f"clip{suffix}"
    _write_with_pyav(path, fmt, make_frames(10, 32, 48))
    assert load_video(path).shape == (10, 32, 48, 3)


def test_max_frames_keeps_the_first_frames(mp4_path: Path) -> None:
    full = load_video(mp4_path)
    head = load_video(mp4_path, max_frames=10)
    assert head.shape == (10, 48, 64, 3)
    np.testing.assert_array_equal(head, full[:10])


def test_frame_limit_is_enforced(mp4_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="more than 20 frames"):
        load_video(mp4_path, MediaLimits(max_frames=20))


def test_duration_limit_is_enforced(mp4_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="over the limit of 1 s"):
        load_video(mp4_path, MediaLimits(max_seconds=1))


def test_pixel_and_byte_limits_are_enforced(mp4_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="64x48 is over the limit"):
        load_video(mp4_path, MediaLimits(max_pixels=1000))
    with pytest.raises(InvalidInputError, match="bytes, over the limit"):
        load_video(mp4_path, MediaLimits(max_bytes=1000))
    with pytest.raises(InvalidInputError, match="pixels in all"):
        load_video(mp4_path, MediaLimits(max_video_pixels=64 * 48 * 10))


@pytest.mark.parametrize("fraction", [0.4, 0.8])
def test_truncated_mp4_is_refused(mp4_path: Path, fraction: float) -> None:
    data = mp4_path.read_bytes()
    with pytest.raises(InvalidInputError, match="video"):
        load_video(data[: int(len(data) * fraction)])


def test_hls_playlist_is_refused_before_ffmpeg(tmp_path: Path, mp4_path: Path) -> None:
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{mp4_path}\n#EXT-X-ENDLIST\n"
    # A misleading suffix must not matter: only the bytes are looked at.
    path = tmp_path / "clip.mp4"
    path.write_text(playlist)
    for source in (playlist.encode(), path):
        with pytest.raises(InvalidInputError, match=r"not a video \(looks like an HLS playlist\)"):
            load_video(source)


def test_ffconcat_and_text_are_refused(mp4_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="ffconcat"):
        load_video(f"ffconcat version 1.0\nfile '{mp4_path}'\n".encode())
    with pytest.raises(InvalidInputError, match="looks like text"):
        load_video(b"not a video at all\n")


def test_image_is_refused_as_video() -> None:
    with pytest.raises(InvalidInputError, match="looks like a PNG image"):
        load_video(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)


def test_garbage_after_a_video_signature_is_refused() -> None:
    data = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 8
    with pytest.raises(InvalidInputError, match=r"video could not be decoded|no video stream"):
        load_video(data)


def test_audio_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audio.mkv"
    with av.open(str(path), mode="w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        samples = np.zeros((1, 1600), np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InvalidInputError, match="no video stream"):
        load_video(path)


def test_max_frames_must_be_positive(mp4_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="max_frames"):
        load_video(mp4_path, max_frames=0)
