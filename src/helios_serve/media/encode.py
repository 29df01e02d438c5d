"""Streaming video writers (H.264 MP4, raw NPY) that publish files atomically; JPEG thumbnails."""

from __future__ import annotations

import contextlib
import functools
import io
import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import av
import numpy as np
import numpy.typing as npt
from numpy.lib.format import open_memmap
from PIL import Image

from helios_serve.errors import InvalidInputError

SUPPORTED_SUFFIXES = (".mp4", ".npy")

# Encoders tried in order: libx264 gives CRF and profiles; "h264" is whatever H.264 encoder the
# FFmpeg build has; MPEG-4 part 2 is the last resort every build ships.
_ENCODER_CANDIDATES = ("libx264", "h264", "mpeg4")

# A fixed thread count: x264's output depends on it, and the same frames must give the same
# bytes on every machine (resumed jobs, extensions and cluster workers join segments).
ENCODER_THREADS = 4

# AVCOL_* value shared by BT.709 primaries, transfer and matrix; AVCOL_RANGE_MPEG is limited range.
_AVCOL_BT709 = 1
_AVCOL_RANGE_MPEG = 1


@functools.cache
def video_encoder_name() -> str:
    """Name of the encoder Mp4Writer uses: the first candidate that really opens here."""
    for name in _ENCODER_CANDIDATES:
        try:
            ctx = av.CodecContext.create(name, "w")
            # Opening (not just looking up) weeds out hardware encoders without their hardware.
            ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
            ctx.time_base = Fraction(1, 24)
            ctx.open()
            return str(ctx.codec.name)
        except (av.FFmpegError, ValueError, OSError):
            continue
    raise RuntimeError("this FFmpeg build has no usable H.264 or MPEG-4 encoder")


def fsync_file(path: Path) -> None:
    """Flush a finished file to the disk, so a crash after its rename cannot leave it empty."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VideoWriter(Protocol):
    """Takes uint8 frames (T, H, W, 3) chunk by chunk; the file appears only on a clean close."""

    def write(self, frames: npt.NDArray[np.uint8]) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def _check_frame_array(
    frames: npt.NDArray[Any], height: int, width: int, ndim: int = 4
) -> npt.NDArray[np.uint8]:
    """Refuse anything but uint8 RGB frames of the writer's size."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        kind = getattr(frames, "dtype", type(frames).__name__)
        raise InvalidInputError(f"frames must be a uint8 numpy array, got {kind}", param="frames")
    expected = (height, width, 3)
    if frames.ndim != ndim or frames.shape[ndim - 3 :] != expected:
        want = "(T, " + ", ".join(map(str, expected)) + ")" if ndim == 4 else str(expected)
        raise InvalidInputError(f"frames must be shaped {want}, got {frames.shape}", param="frames")
    return np.ascontiguousarray(frames)


class _AtomicWriter:
    """Shared part of the writers: writes to `<name>.part`, renames it over `path` on close."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        if width < 1 or height < 1:
            raise InvalidInputError(f"frame size must be positive, got {width}x{height}")
        if not path.parent.is_dir():
            raise InvalidInputError(f"output directory {path.parent} does not exist", param="path")
        self.path = path
        self.width = width
        self.height = height
        # Same directory as the target, so the final rename is atomic (one filesystem).
        self.tmp_path = path.with_name(path.name + ".part")
        self.frames_written = 0
        self._closed = False

    def write(self, frames: npt.NDArray[np.uint8]) -> None:
        """Append frames shaped (T, H, W, 3); T may differ from call to call."""
        if self._closed:
            raise ValueError(f"writer for {self.path} is already closed")
        checked = _check_frame_array(frames, self.height, self.width)
        self._write(checked)
        self.frames_written += int(checked.shape[0])

    def close(self) -> None:
        """Finish the file and move it to its final path; does nothing if already closed."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish()
            fsync_file(self.tmp_path)  # durable before it is published (and then recorded)
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self._discard()
            self.tmp_path.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Drop everything written so far; nothing appears at the final path."""
        if self._closed:
            return
        self._closed = True
        self._discard()
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write(self, frames: npt.NDArray[np.uint8]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        """Release resources after a failure; must not raise."""
        raise NotImplementedError


class Mp4Writer(_AtomicWriter):
    """H.264 (yuv420p, BT.709, main profile) in a fast-start MP4, encoded chunk by chunk."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int = 24,
        crf: int = 18,
        *,
        preset: str = "medium",
    ) -> None:
        super().__init__(path, width, height)
        if width % 2 or height % 2:
            raise InvalidInputError(
                f"MP4 (yuv420p) needs an even width and height, got {width}x{height}"
            )
        if not 1 <= fps <= 240:
            raise InvalidInputError(f"fps must be between 1 and 240, got {fps}", param="fps")
        if not 0 <= crf <= 51:
            raise InvalidInputError(f"crf must be between 0 and 51, got {crf}", param="crf")
        self.fps = fps
        codec = video_encoder_name()
        gop = str(fps * 2)
        # A fixed GOP (keyframe every 2 s, no scene-cut extras) gives regular seek points.
        options = {"g": gop, "keyint_min": gop, "sc_threshold": "0"}
        if codec == "libx264":
            # mbtree off: with it (and B-frames), this x264 gives different bytes for the same
            # frames from one encode to the next, even on one thread (224x128: 30 encodes, 30
            # different files); off, 30 of 30 match at every size tried. Resumed jobs,
            # extensions and cluster workers join segments and need equal bytes. The price:
            # larger files at CRF 18 (+79% on a synthetic 640x384 clip, at +0.3 dB PSNR).
            options |= {"crf": str(crf), "preset": preset, "profile": "main", "mbtree": "0"}
        # "file:" stops FFmpeg reading a protocol ("concat:", "http:") out of the path; +faststart
        # puts the index first so players start before the whole file has arrived.
        url = "file:" + str(self.tmp_path.absolute())
        self._container: Any = av.open(
            url, mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        try:
            stream = self._container.add_stream(codec, rate=fps, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            ctx = stream.codec_context
            ctx.time_base = Fraction(1, fps)
            # Set on the context, not as an option: left to FFmpeg's "auto", x264's output
            # was seen to differ between runs of the same frames.
            ctx.thread_count = ENCODER_THREADS
            ctx.thread_type = "FRAME"
            if codec != "libx264":
                # No CRF outside libx264: about 0.15 bit per pixel is visually clean.
                ctx.bit_rate = int(width * height * fps * 0.15)
            # Tag BT.709 limited range, matching the conversion in `_write`, so that players
            # and our own decoder turn the YUV back into the same RGB.
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = _AVCOL_BT709
            ctx.color_range = _AVCOL_RANGE_MPEG
            self._stream: Any = stream
        except BaseException:
            self.abort()
            raise

    def _write(self, frames: npt.NDArray[np.uint8]) -> None:
        for offset, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="itu709", dst_color_range=1)
            frame.pts = self.frames_written + offset
            frame.time_base = Fraction(1, self.fps)
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def _finish(self) -> None:
        if self.frames_written == 0:
            raise ValueError(f"no frames were written to {self.path}")
        for packet in self._stream.encode(None):  # drain the encoder's delayed frames
            self._container.mux(packet)
        self._container.close()

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()


class NpyWriter(_AtomicWriter):
    """Raw uint8 frames (T, H, W, 3) in a .npy file, written through a memory map."""

    def __init__(self, path: Path, width: int, height: int, total_frames: int) -> None:
        super().__init__(path, width, height)
        if total_frames < 1:
            raise InvalidInputError(
                f"total_frames must be at least 1, got {total_frames}", param="total_frames"
            )
        self.total_frames = total_frames
        self._array: np.memmap[Any, np.dtype[np.uint8]] | None = open_memmap(
            self.tmp_path, mode="w+", dtype=np.uint8, shape=(total_frames, height, width, 3)
        )

    def _write(self, frames: npt.NDArray[np.uint8]) -> None:
        assert self._array is not None  # only None after close/abort, which `write` refuses
        end = self.frames_written + frames.shape[0]
        if end > self.total_frames:
            raise InvalidInputError(
                f"writing frame {end} but the file was sized for {self.total_frames} frames"
            )
        self._array[self.frames_written : end] = frames

    def _finish(self) -> None:
        array, self._array = self._array, None
        assert array is not None
        array.flush()
        if self.frames_written < self.total_frames:
            # The header holds the shape, so a short stream is copied into a right-sized file;
            # it only happens when a stream stops early (e.g. a cancelled job).
            short = self.tmp_path.with_name(self.tmp_path.name + ".short")
            try:
                with short.open("wb") as fh:
                    np.save(fh, array[: self.frames_written])
                del array
                os.replace(short, self.tmp_path)
            finally:
                short.unlink(missing_ok=True)

    def _discard(self) -> None:
        self._array = None


def open_writer(path: Path, width: int, height: int, fps: int, total_frames: int) -> VideoWriter:
    """Pick the writer by file suffix: `.mp4` (H.264) or `.npy` (raw uint8 frames)."""
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        return Mp4Writer(path, width, height, fps=fps)
    if suffix == ".npy":
        return NpyWriter(path, width, height, total_frames)
    raise InvalidInputError(
        f"unsupported output suffix {path.suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}",
        param="path",
    )


THUMBNAIL_SIDE = 320
"""A thumbnail's longer side at most (a list of cards shows many; the video is there in full)."""


def encode_thumbnail(
    frame: npt.NDArray[np.uint8], *, quality: int = 85, max_side: int | None = THUMBNAIL_SIDE
) -> bytes:
    """JPEG bytes for one (H, W, 3) uint8 frame, shrunk to fit `max_side` (None: as it is)."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        shape = getattr(frame, "shape", type(frame).__name__)
        raise InvalidInputError(f"a thumbnail needs one (H, W, 3) frame, got {shape}")
    checked = _check_frame_array(frame, frame.shape[0], frame.shape[1], ndim=3)
    img = Image.fromarray(checked)
    if max_side is not None:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
