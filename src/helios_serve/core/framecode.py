"""FrameCode: a chunk index, frame index and prompt tag painted into a frame as big blocks.

The paced test engine (`engine/paced.py`) paints one into every frame it makes, so a client at
the other end of a lossy video codec (VP8 over WebRTC, H.264 in fMP4) can tell from pixels
alone which chunk and frame it is looking at and which prompt made it: when a prompt change
reaches the screen, when a frame repeats (a stall), and whether a dropped chunk ever showed.

Layout: the top rows of the frame hold a 12 x 3 grid of square cells, each black or white
(one bit, read back as the mean luma of the cell's middle against mid-grey, so codec blur at
the cell edges does not matter). 36 bits: a 4-bit marker, 12 bits of chunk index, 6 bits of
frame index, 10 bits of prompt tag and a 4-bit checksum; a frame without a valid code (a real
model's output, the black placeholder) reads as None.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

COLUMNS = 12
ROWS = 3
MARKER = 0b1010
CHUNK_BITS, FRAME_BITS, TAG_BITS = 12, 6, 10
LOW, HIGH = 16, 235
"""Video-range black and white: they survive YUV conversion unclipped."""

Frame = npt.NDArray[np.uint8]


def prompt_tag(prompt: str) -> int:
    """The 10-bit tag a prompt paints (two prompts share one with probability 1/1024)."""
    return zlib.crc32(prompt.encode()) & ((1 << TAG_BITS) - 1)


@dataclass(frozen=True)
class FrameCode:
    chunk: int
    """The chunk index modulo 4096."""
    frame: int
    """The frame's index within its chunk (0..63)."""
    tag: int
    """`prompt_tag` of the prompt the chunk was made with."""

    def bits(self) -> list[int]:
        fields = (
            (MARKER, 4),
            (self.chunk % (1 << CHUNK_BITS), CHUNK_BITS),
            (self.frame % (1 << FRAME_BITS), FRAME_BITS),
            (self.tag % (1 << TAG_BITS), TAG_BITS),
        )
        out = [(value >> i) & 1 for value, width in fields for i in reversed(range(width))]
        return out + _checksum(out)


def _checksum(bits: list[int]) -> list[int]:
    nibbles = [int("".join(map(str, bits[i : i + 4])), 2) for i in range(0, len(bits), 4)]
    total = sum(nibbles) % 16
    return [(total >> i) & 1 for i in reversed(range(4))]


def cell_size(width: int, height: int) -> int:
    """Side of one cell in pixels (0 when the frame is too small to carry a code)."""
    side = width // COLUMNS
    return side if side >= 4 and ROWS * side <= height else 0


def paint(frame: Frame, code: FrameCode) -> None:
    """Write `code` into the top of `frame` (H, W, 3) in place."""
    height, width = frame.shape[:2]
    side = cell_size(width, height)
    if side == 0:
        raise ValueError(f"a {width}x{height} frame is too small for a frame code")
    for i, bit in enumerate(code.bits()):
        row, col = divmod(i, COLUMNS)
        frame[row * side : (row + 1) * side, col * side : (col + 1) * side] = HIGH if bit else LOW


def read(frame: npt.NDArray[Any]) -> FrameCode | None:
    """The code painted in `frame` (RGB or grey), or None when it carries no valid one."""
    luma = frame if frame.ndim == 2 else frame.mean(axis=2)
    height, width = luma.shape
    side = cell_size(width, height)
    if side == 0:
        return None
    q = max(1, side // 4)  # the middle half of each cell
    bits = []
    for i in range(COLUMNS * ROWS):
        row, col = divmod(i, COLUMNS)
        y, x = row * side, col * side
        bits.append(int(float(luma[y + q : y + side - q, x + q : x + side - q].mean()) > 128))
    value = int("".join(map(str, bits[:32])), 2)
    if value >> 28 != MARKER or bits[32:] != _checksum(bits[:32]):
        return None
    tag = value & ((1 << TAG_BITS) - 1)
    frame_index = (value >> TAG_BITS) & ((1 << FRAME_BITS) - 1)
    chunk = (value >> (TAG_BITS + FRAME_BITS)) & ((1 << CHUNK_BITS) - 1)
    return FrameCode(chunk, frame_index, tag)
