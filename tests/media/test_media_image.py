"""load_image: valid images come back as RGB; every bad file is an InvalidInputError."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helios_serve.errors import InvalidInputError
from helios_serve.media.decode import load_image
from helios_serve.media.limits import MediaLimits


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _pattern(width: int = 40, height: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 6, y * 8, np.full_like(x, 90)], axis=-1).astype(np.uint8)


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is patched to declare another size, CRC fixed up."""
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    # Signature (8) + length (4) + b"IHDR" (4): width and height follow, then 5 bytes, then CRC.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_png_round_trip_is_exact() -> None:
    pixels = _pattern()
    img = load_image(_encode(Image.fromarray(pixels), "PNG"))
    assert img.mode == "RGB"
    assert img.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(img), pixels)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    pixels = _pattern()
    path = tmp_path / "ref.jpg"
    path.write_bytes(_encode(Image.fromarray(pixels), "JPEG", quality=95))
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == (40, 30)
    diff = np.abs(np.asarray(img).astype(int) - pixels.astype(int))
    assert diff.mean() < 3


def test_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    img = load_image(data)
    assert img.mode == "RGB"
    assert tuple(np.asarray(img)[4, 4]) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "1", "I;16", "CMYK"])
def test_other_modes_become_rgb(mode: str) -> None:
    src = Image.fromarray(_pattern()).convert(mode) if mode != "I;16" else None
    if src is None:
        grey = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
        src = Image.fromarray(grey)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img = load_image(_encode(src, fmt))
    assert img.mode == "RGB"
    assert img.size == (40, 30)


def test_sixteen_bit_grey_keeps_its_range() -> None:
    grey = np.full((4, 4), 0x8000, dtype=np.uint16)
    src = Image.fromarray(grey)
    assert src.mode == "I;16"
    img = load_image(_encode(src, "PNG"))
    assert tuple(np.asarray(img)[0, 0]) == (128, 128, 128)


def test_png_with_transparency_becomes_rgb() -> None:
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0
    img = load_image(_encode(Image.fromarray(rgba), "PNG"))
    assert img.mode == "RGB"
    assert tuple(np.asarray(img)[0, 0]) == (200, 0, 0)


def test_truncated_png_is_refused() -> None:
    data = _encode(Image.fromarray(_pattern(200, 200)), "PNG")
    with pytest.raises(InvalidInputError, match="image could not be decoded"):
        load_image(data[: len(data) // 2])


def test_corrupt_jpeg_is_refused() -> None:
    data = bytearray(_encode(Image.fromarray(_pattern(64, 64)), "JPEG"))
    data[20:] = b"\x00" * (len(data) - 20)
    with pytest.raises(InvalidInputError):
        load_image(bytes(data))


def test_text_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"not an image \(looks like text\)") as info:
        load_image(b"a cat riding a skateboard\n", param="input_reference")
    assert info.value.param == "input_reference"


def test_video_is_refused_as_image(mp4_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="looks like an MP4/MOV video"):
        load_image(mp4_path)


@pytest.mark.parametrize("side", [5000, 40000])
def test_png_decompression_bomb_is_refused_fast(side: int) -> None:
    # 5000² is over our limit but under Pillow's own; 40000² is over both.
    bomb = _png_claiming(side, side)
    assert len(bomb) < 100
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="over the limit"):
        load_image(bomb)
    assert time.perf_counter() - start < 1.0


def test_webp_decompression_bomb_is_refused_from_its_header() -> None:
    # RIFF/WEBP with a VP8X chunk declaring a 16000x16000 canvas and nothing else.
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    vp8x += (16000 - 1).to_bytes(3, "little") + (16000 - 1).to_bytes(3, "little")
    data = b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x
    with pytest.raises(InvalidInputError, match="16000x16000 is over the limit"):
        load_image(data)


def test_pixel_limit_is_configurable() -> None:
    data = _encode(Image.fromarray(_pattern()), "PNG")
    with pytest.raises(InvalidInputError, match="40x30"):
        load_image(data, MediaLimits(max_pixels=100))


def test_byte_limit(tmp_path: Path) -> None:
    data = _encode(Image.fromarray(_pattern()), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(InvalidInputError, match="bytes, over the limit"):
            load_image(source, MediaLimits(max_bytes=len(data) - 1))


def test_missing_file_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InvalidInputError, match="not a regular file"):
        load_image(tmp_path)
