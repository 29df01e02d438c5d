"""Spritesheets: a grid of evenly spaced frames, collected while a video streams past."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image


class SpriteCollector:
    """Keeps `count` evenly spaced frames (downscaled) of a video of `total_frames` frames."""

    def __init__(self, total_frames: int, count: int = 16, tile_width: int = 160) -> None:
        count = max(1, min(count, total_frames))
        self._wanted = {round(i * (total_frames - 1) / max(1, count - 1)) for i in range(count)}
        self._tile_width = tile_width
        self._tiles: list[Image.Image] = []
        self._seen = 0

    def add(self, frames: npt.NDArray[np.uint8]) -> None:
        """Offer the next frames of the video, in order."""
        for offset in range(len(frames)):
            if self._seen + offset in self._wanted:
                self._tiles.append(self._tile(frames[offset]))
        self._seen += len(frames)

    def _tile(self, frame: npt.NDArray[np.uint8]) -> Image.Image:
        image = Image.fromarray(frame)
        width = min(self._tile_width, image.width)
        height = max(1, round(image.height * width / image.width))
        return image.resize((width, height), Image.Resampling.BILINEAR)

    def render_jpeg(self, columns: int = 4, quality: int = 85) -> bytes:
        """The collected tiles as one JPEG grid, row by row."""
        if not self._tiles:
            raise ValueError("no frames were collected")
        tile_w, tile_h = self._tiles[0].size
        rows = -(-len(self._tiles) // columns)
        sheet = Image.new("RGB", (tile_w * min(columns, len(self._tiles)), tile_h * rows))
        for i, tile in enumerate(self._tiles):
            sheet.paste(tile, ((i % columns) * tile_w, (i // columns) * tile_h))
        out = io.BytesIO()
        sheet.save(out, format="JPEG", quality=quality)
        return out.getvalue()
