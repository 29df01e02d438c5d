"""The paced video track: chunks arrive in bursts, frames leave evenly at the emission rate.

`PacedVideoTrack.recv()` only takes the next frame from the session's `FrameBuffer`
(playout.py) and stamps it, telling the buffer the frame's pts (the buffer reports the first
frame of each chunk as it goes out); when the buffer runs dry it repeats the last frame (black
before the first) so the peer never stalls. Frames go out at the rate the buffer plays at
(`FrameBuffer.interval()`: the emission rate, or slower while the engine falls behind), and
each pts is the time it goes out on the 90 kHz clock, so a receiver plays them at that rate.
A reconnect builds a new track on the same buffer.
A client may pause the track (newer clients' `PauseTrack`): nothing is sent until it resumes;
the buffer sees no consumer, fills and generation waits on it.

Frames leave as yuv420p, the encoders' input, so the sender's encoder converts nothing. A chunk
may come at model size with its SR scale still to apply (`FrameBuffer.pop_frame`): then one
swscale pass upscales (bicubic) and converts, 2-6 ms at 4x where torch's bicubic took 90-390 ms
and the conversion of its output 20 ms (`helios bench-egress`). That scale is capped by the
`EgressGovernor`, which this track feeds with every frame it sends (egress.py).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import numpy as np
from aiortc import VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from helios_serve.core.types import Frames
from helios_serve.realtime.egress import EgressGovernor
from helios_serve.realtime.playout import FrameBuffer

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


def video_frame(pixels: Frames, scale: int = 1) -> VideoFrame:
    """An RGB frame (H, W, 3) as a yuv420p `VideoFrame`, upscaled `scale` times (bicubic)."""
    rgb = VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
    height, width = pixels.shape[:2]
    # even sizes: yuv420p halves both for chroma
    out_w, out_h = (width * scale) & ~1, (height * scale) & ~1
    return rgb.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="BICUBIC")


class PacedVideoTrack(VideoStreamTrack):  # type: ignore[misc]  # aiortc base is Any via av
    """Sends the buffer's frames at `fps` on the 90 kHz clock."""

    def __init__(
        self,
        buffer: FrameBuffer,
        fps: float,
        width: int,
        height: int,
        egress: EgressGovernor | None = None,
    ) -> None:
        super().__init__()
        self._buffer = buffer
        self._fps = fps
        self._width = width
        self.egress = egress or EgressGovernor(fps)
        self._last: Frames = np.zeros((height, width, 3), dtype=np.uint8)
        self._last_scale = 1
        self._last_video: VideoFrame | None = None
        self._returned_at: float | None = None
        self.repeats = 0
        """Frames sent again because the buffer had none (the generator is behind)."""
        self._elapsed = 0.0
        """Seconds of playback from the first frame to the one going out next."""
        self._start_time: float | None = None
        self._playing = asyncio.Event()
        self._playing.set()
        self._paused_at: float | None = None

    def set_paused(self, paused: bool) -> None:
        """Stop or restart sending; on restart the clock skips the pause instead of catching up."""
        if paused and self._playing.is_set():
            self._playing.clear()
            self._paused_at = time.time()
            self._returned_at = None
        elif not paused and not self._playing.is_set():
            if self._start_time is not None and self._paused_at is not None:
                self._start_time += time.time() - self._paused_at
            self._paused_at = None
            self._playing.set()

    @property
    def paused(self) -> bool:
        return not self._playing.is_set()

    async def next_timestamp(self) -> tuple[int, fractions.Fraction]:
        # aiortc's own version is fixed at 30 fps; this one keeps its scheme at the rate the
        # buffer plays at, which may change from one frame to the next.
        if self.readyState != "live":
            raise MediaStreamError
        if self._start_time is None:
            self._start_time = time.time()
        else:
            self._elapsed += self._buffer.interval()
            wait = self._start_time + self._elapsed - time.time()
            await asyncio.sleep(max(0.0, wait))
        return round(self._elapsed * VIDEO_CLOCK_RATE), VIDEO_TIME_BASE

    async def recv(self) -> Any:
        called = time.perf_counter()
        # since the last frame left: the sender encoded and sent it
        busy = called - self._returned_at if self._returned_at is not None else 0.0
        await self._playing.wait()
        pts, time_base = await self.next_timestamp()
        prepared = time.perf_counter()
        item = self._buffer.pop_frame(pts)
        scale = self.egress.limit(item.scale) if item is not None else self._last_scale
        if item is not None:
            self._last = item.pixels
        video: Any = self._last_video
        if item is None and scale == self._last_scale and video is not None:
            self.repeats += 1  # the same frame again: no conversion
        else:
            video = await asyncio.to_thread(video_frame, self._last, scale)
            self._last_video, self._last_scale = video, scale
        video.pts = pts
        video.time_base = time_base
        busy += time.perf_counter() - prepared
        self.egress.frame_sent(max(1, video.width // self._width), busy, self._buffer.rate.fps)
        self._returned_at = time.perf_counter()
        return video
