"""Safe decoding of user images and videos: sniff first, check headers, then decode under limits."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from helios_serve.errors import InvalidInputError
from helios_serve.media.limits import DEFAULT_LIMITS, MediaLimits

MediaKind = Literal["image", "video"]

# Enough bytes to recognise every format below (the WEBP size fields end at byte 30).
_HEAD_BYTES = 64

# Demuxers we let FFmpeg use; names as they appear in `container.format.name` ("mov,mp4,...").
_ALLOWED_DEMUXERS = frozenset({"mov", "mp4", "matroska", "webm", "avi"})

# Brands of ISO-BMFF files that are still images, not videos: the mov demuxer would try them.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif"})

# Everything PyAV/FFmpeg raises on a hostile or broken stream; all of it means "bad file".
_AV_ERRORS: tuple[type[BaseException], ...] = (
    av.FFmpegError,
    OSError,
    ValueError,
    IndexError,
    EOFError,
    MemoryError,
)


@dataclass(frozen=True)
class _Sniffed:
    kind: MediaKind | None
    label: str  # what the bytes look like, for error messages
    pil_format: str | None = None  # the only Pillow plugin allowed to open them
    demuxer: str | None = None  # the only FFmpeg demuxer allowed to open them


@dataclass(frozen=True)
class VideoInfo:
    """What a video file really holds; `frames` is counted by decoding, not read from metadata."""

    frames: int
    width: int
    height: int
    fps: float
    codec: str
    pix_fmt: str


def _sniff(head: bytes) -> _Sniffed:
    """Classify bytes by their magic numbers alone; never trusts a file name."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _Sniffed("image", "a PNG image", pil_format="PNG")
    if head.startswith(b"\xff\xd8\xff"):
        return _Sniffed("image", "a JPEG image", pil_format="JPEG")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return _Sniffed("image", "a GIF image", pil_format="GIF")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _Sniffed("image", "a WEBP image", pil_format="WEBP")
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return _Sniffed("video", "an AVI video", demuxer="avi")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _Sniffed("video", "a Matroska/WebM video", demuxer="matroska")
    if head[4:8] == b"ftyp":
        if head[8:12] in _HEIF_BRANDS:
            return _Sniffed(None, "a HEIF/AVIF image, which is not supported")
        return _Sniffed("video", "an MP4/MOV video", demuxer="mov")
    # Old QuickTime files may start with one of these atoms instead of `ftyp`.
    if head[4:8] in (b"moov", b"mdat", b"wide"):
        return _Sniffed("video", "a QuickTime video", demuxer="mov")
    return _Sniffed(None, _describe_unknown(head))


def _describe_unknown(head: bytes) -> str:
    """Name what unsupported bytes look like, so the error says more than "invalid"."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return "an empty file"
    if stripped.startswith(b"#EXTM3U"):
        return "an HLS playlist"
    if stripped.startswith(b"ffconcat"):
        return "an ffconcat script"
    if head.startswith(b"BM"):
        return "a BMP image, which is not supported"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "a TIFF image, which is not supported"
    if stripped.startswith(b"<"):
        return "markup (XML/HTML/SVG)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The head may cut a multi-byte character in half; judge the rest.
        text = head[:-3].decode("utf-8", errors="replace")
    if "\ufffd" not in text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text"
    return "unrecognised binary data"


def sniff_kind(data: bytes) -> MediaKind | None:
    """Say whether `data` is a supported image or video by its magic bytes; None otherwise."""
    return _sniff(data[:_HEAD_BYTES]).kind


def _check_file(path: Path, limits: MediaLimits, param: str | None) -> None:
    """Refuse missing, non-regular and oversized files before reading them."""
    try:
        st = path.stat()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}", param=param) from exc
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a regular file", param=param)
    _check_size(st.st_size, limits, param)


def _check_size(size: int, limits: MediaLimits, param: str | None) -> None:
    if size > limits.max_bytes:
        raise InvalidInputError(
            f"file is {size} bytes, over the limit of {limits.max_bytes} bytes", param=param
        )


def _check_pixels(width: int, height: int, limits: MediaLimits, param: str | None) -> None:
    if width * height > limits.max_pixels:
        raise InvalidInputError(
            f"frame size {width}x{height} is over the limit of {limits.max_pixels} pixels",
            param=param,
        )


def _webp_declared_size(head: bytes) -> tuple[int, int] | None:
    """Read a WEBP canvas size from its header: Pillow's WEBP decoder allocates on open."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width = int.from_bytes(head[26:28], "little") & 0x3FFF
        height = int.from_bytes(head[28:30], "little") & 0x3FFF
        return width, height
    return None


def load_image(
    source: bytes | Path, limits: MediaLimits = DEFAULT_LIMITS, *, param: str | None = None
) -> Image.Image:
    """Decode a PNG, JPEG, WEBP or GIF (first frame) into a fully loaded RGB image.

    Every problem with the file (wrong kind, too big, truncated, corrupt) raises
    `InvalidInputError`; `param` names the request field for the error.
    """
    if isinstance(source, Path):
        _check_file(source, limits, param)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {source}: {exc.strerror}", param=param) from exc
    else:
        data = source
    # Checked again on the bytes themselves: the file may have grown since `stat`.
    _check_size(len(data), limits, param)
    sniffed = _sniff(data[:_HEAD_BYTES])
    if sniffed.kind != "image" or sniffed.pil_format is None:
        raise InvalidInputError(f"not an image (looks like {sniffed.label})", param=param)
    if sniffed.pil_format == "WEBP" and (size := _webp_declared_size(data)) is not None:
        _check_pixels(*size, limits, param)
    try:
        # `formats` pins the plugin to the sniffed one, so Pillow cannot fall back to others.
        opened = Image.open(io.BytesIO(data), formats=[sniffed.pil_format])
        # Opening parsed only the header; refuse bombs before `load()` allocates the pixels.
        _check_pixels(opened.width, opened.height, limits, param)
        opened.load()
        # Phone photos store rotation in EXIF; apply it so the model sees the upright image.
        return _to_rgb(ImageOps.exif_transpose(opened))
    except InvalidInputError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's own (higher) ceiling can fire inside `open`, before our check runs.
        raise InvalidInputError(
            "image size is over the limit Pillow allows (a likely decompression bomb)",
            param=param,
        ) from exc
    except Exception as exc:
        # Pillow plugins raise a zoo of types on hostile input (OSError, SyntaxError,
        # ValueError, struct.error, EOFError, ...): all of them mean a bad file.
        raise InvalidInputError(
            f"image could not be decoded: {_one_line(exc)}", param=param
        ) from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I"):
        # 16-bit greyscale PNGs open as "I;16"/"I"; a plain convert would clip them to white.
        grey = np.asarray(img, dtype=np.int64) >> 8
        return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        # Going through RGBA keeps Pillow from warning about palette transparency.
        img = img.convert("RGBA")
    # Alpha is dropped, as diffusers' `load_image` does, so references match the reference pipeline.
    return img.convert("RGB")


def _one_line(exc: BaseException) -> str:
    # FFmpeg errors read "[Errno N] reason: 'function()'"; the reason alone is what users need.
    reason = exc.strerror if isinstance(exc, av.FFmpegError) and exc.strerror else str(exc)
    text = " ".join(str(reason).split()) or type(exc).__name__
    return text[:200]


@contextmanager
def _open_video(
    source: bytes | Path, limits: MediaLimits, param: str | None
) -> Iterator[tuple[Any, Any]]:
    """Open a sniffed, allow-listed container and yield it with its first video stream."""
    with ExitStack() as stack:
        fileobj: BinaryIO
        if isinstance(source, Path):
            _check_file(source, limits, param)
            # A file object, not the path string: FFmpeg would parse "concat:..." or "http://..."
            # path strings as protocols and could be led to read other files.
            try:
                fileobj = stack.enter_context(source.open("rb"))
                head = fileobj.read(_HEAD_BYTES)
                fileobj.seek(0)
            except OSError as exc:
                msg = f"cannot read {source}: {exc.strerror}"
                raise InvalidInputError(msg, param=param) from exc
        else:
            _check_size(len(source), limits, param)
            fileobj = io.BytesIO(source)
            head = bytes(source[:_HEAD_BYTES])
        sniffed = _sniff(head)
        # Sniffing happens before FFmpeg sees a byte, so playlists (HLS, ffconcat) that point at
        # other files or URLs are never parsed; the demuxer is pinned to the sniffed one as well.
        if sniffed.kind != "video" or sniffed.demuxer is None:
            raise InvalidInputError(f"not a video (looks like {sniffed.label})", param=param)
        try:
            container = stack.enter_context(av.open(fileobj, mode="r", format=sniffed.demuxer))
        except _AV_ERRORS as exc:
            raise _decode_error(exc, param) from exc
        names = set(str(container.format.name).split(","))
        if not names & _ALLOWED_DEMUXERS:
            raise InvalidInputError(
                f"unsupported video container {container.format.name!r}", param=param
            )
        if not container.streams.video:
            raise InvalidInputError("file has no video stream", param=param)
        stream = container.streams.video[0]
        _check_pixels(stream.codec_context.width, stream.codec_context.height, limits, param)
        # Let FFmpeg pick frame or slice threading; decoding is the slow part.
        stream.thread_type = "AUTO"
        yield container, stream


def _decode_error(exc: BaseException, param: str | None) -> InvalidInputError:
    return InvalidInputError(f"video could not be decoded: {_one_line(exc)}", param=param)


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return None


class _FrameBudget:
    """Per-frame limit checks while decoding: count, size, total pixels and elapsed time."""

    def __init__(self, limits: MediaLimits, param: str | None) -> None:
        self.limits = limits
        self.param = param
        self.count = 0
        self.pixels = 0
        self.size: tuple[int, int] | None = None
        self.start: float | None = None

    def admit(self, frame: Any) -> None:
        limits, param = self.limits, self.param
        if self.count >= limits.max_frames:
            raise InvalidInputError(f"video has more than {limits.max_frames} frames", param=param)
        if self.size is None:
            self.size = (frame.width, frame.height)
            _check_pixels(frame.width, frame.height, limits, param)
        elif (frame.width, frame.height) != self.size:
            raise InvalidInputError("video changes resolution mid-stream", param=param)
        self.pixels += frame.width * frame.height
        if self.pixels > limits.max_video_pixels:
            raise InvalidInputError(
                f"video holds more than {limits.max_video_pixels} pixels in all", param=param
            )
        if frame.time is not None:
            self.start = frame.time if self.start is None else self.start
            if frame.time - self.start > limits.max_seconds:
                raise InvalidInputError(
                    f"video lasts over the limit of {limits.max_seconds:g} s", param=param
                )
        self.count += 1


def _iter_frames(
    container: Any, stream: Any, limits: MediaLimits, cap: int | None, param: str | None
) -> Iterator[Any]:
    """Yield decoded frames, enforcing every limit; stops quietly after `cap` frames."""
    if cap is None:
        # Only a file decoded to the end needs to fit the duration limit as a whole.
        seconds = _declared_seconds(container, stream)
        if seconds is not None and seconds > limits.max_seconds:
            raise InvalidInputError(
                f"video lasts {seconds:.1f} s, over the limit of {limits.max_seconds:g} s",
                param=param,
            )
    budget = _FrameBudget(limits, param)
    try:
        for frame in container.decode(stream):
            budget.admit(frame)
            yield frame
            if cap is not None and budget.count >= cap:
                return
    except _AV_ERRORS as exc:
        raise _decode_error(exc, param) from exc
    if budget.count == 0:
        raise InvalidInputError("video has no decodable frames", param=param)
    declared = int(stream.frames or 0)
    if cap is None and 0 < budget.count < declared:
        # Demuxers stop quietly at a cut-off end; the container's own frame count gives it away.
        raise InvalidInputError(
            f"video is truncated: decoded {budget.count} of {declared} frames", param=param
        )


def load_video(
    source: bytes | Path,
    limits: MediaLimits = DEFAULT_LIMITS,
    max_frames: int | None = None,
    *,
    param: str | None = None,
) -> npt.NDArray[np.uint8]:
    """Decode an MP4/MOV, Matroska/WebM or AVI video to RGB frames shaped (T, H, W, 3).

    `max_frames` keeps only the first frames (no error if there are more); without it the
    whole video must fit `limits`. Every problem with the file raises `InvalidInputError`.
    """
    if max_frames is not None and max_frames < 1:
        raise InvalidInputError(f"max_frames must be at least 1, got {max_frames}", param=param)
    frames: list[npt.NDArray[np.uint8]] = []
    with _open_video(source, limits, param) as (container, stream):
        for frame in _iter_frames(container, stream, limits, max_frames, param):
            try:
                frames.append(frame.to_ndarray(format="rgb24"))
            except _AV_ERRORS as exc:
                raise _decode_error(exc, param) from exc
    return np.stack(frames)


def probe_video(source: bytes | Path, limits: MediaLimits = DEFAULT_LIMITS) -> VideoInfo:
    """Describe a video by decoding all of it (frame count included), without converting to RGB."""
    with _open_video(source, limits, None) as (container, stream):
        count = sum(1 for _ in _iter_frames(container, stream, limits, None, None))
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            frames=count,
            width=int(ctx.width),
            height=int(ctx.height),
            fps=float(rate) if rate else 0.0,
            codec=str(ctx.name),
            pix_fmt=str(ctx.pix_fmt),
        )
