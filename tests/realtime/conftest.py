"""Shared helpers: a numpy upscaler, test images, and a recorder for session events."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image


def np_upscale(frames: npt.NDArray[np.uint8], scale: int) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour stand-in for the real SR model."""
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


def png_bytes(
    width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 60)
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


class EventLog:
    """Collects emitted events (nested envelopes) and waits for one matching a predicate."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e["data"]["data"] for e in self.events if e["data"]["type"] == name]

    async def wait(
        self,
        name: str,
        pred: Callable[[dict[str, Any]], bool] = lambda _: True,
        within: float = 10,
    ) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if event["data"]["type"] == name and pred(event["data"]["data"]):
                        return event["data"]["data"]  # type: ignore[no-any-return]
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), within)
