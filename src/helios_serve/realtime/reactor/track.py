"""The paced video track: chunks arrive in bursts, frames leave evenly at the emission rate.

`PacedVideoTrack.recv()` only takes the next frame from the session's `FrameBuffer`
(playout.py) and stamps it, telling the buffer the frame's pts (the buffer reports the first
frame of each chunk as it goes out); when the buffer runs dry it repeats the last frame (black
before the first) so the peer never stalls. A reconnect builds a new track on the same buffer.
A client may pause the track (newer clients' `PauseTrack`): nothing is sent until it resumes;
the buffer sees no consumer, fills and generation waits on it.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from helios_serve.realtime.playout import FrameBuffer

Frames = npt.NDArray[np.uint8]
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


class PacedVideoTrack(VideoStreamTrack):  # type: ignore[misc]  # aiortc base is Any via av
    """Sends the buffer's frames at `fps` on the 90 kHz clock."""

    def __init__(self, buffer: FrameBuffer, fps: float, width: int, height: int) -> None:
        super().__init__()
        self._buffer = buffer
        self._fps = fps
        self._last: Frames = np.zeros((height, width, 3), dtype=np.uint8)
        self._count = 0
        self._start_time: float | None = None
        self._playing = asyncio.Event()
        self._playing.set()
        self._paused_at: float | None = None

    def set_paused(self, paused: bool) -> None:
        """Stop or restart sending; on restart the clock skips the pause instead of catching up."""
        if paused and self._playing.is_set():
            self._playing.clear()
            self._paused_at = time.time()
        elif not paused and not self._playing.is_set():
            if self._start_time is not None and self._paused_at is not None:
                self._start_time += time.time() - self._paused_at
            self._paused_at = None
            self._playing.set()

    @property
    def paused(self) -> bool:
        return not self._playing.is_set()

    async def next_timestamp(self) -> tuple[int, fractions.Fraction]:
        # aiortc's own version is fixed at 30 fps; this one keeps its scheme at our rate.
        if self.readyState != "live":
            raise MediaStreamError
        if self._start_time is None:
            self._start_time = time.time()
        else:
            self._count += 1
            wait = self._start_time + self._count / self._fps - time.time()
            await asyncio.sleep(max(0.0, wait))
        return round(self._count * VIDEO_CLOCK_RATE / self._fps), VIDEO_TIME_BASE

    async def recv(self) -> Any:
        await self._playing.wait()
        pts, time_base = await self.next_timestamp()
        frame = self._buffer.pop(pts)
        if frame is not None:
            self._last = frame
        video = VideoFrame.from_ndarray(np.ascontiguousarray(self._last), format="rgb24")
        video.pts = pts
        video.time_base = time_base
        return video
