"""Generation: the loop that makes chunks just in time and remakes those a change reaches.

It serves a Reactor session and a `/v1/realtime/video` socket alike. A `ChunkSource` (the
session's state machine, the socket's interactions) says whether a chunk is wanted and what
each one is made with; the loop decides when (`pacing.until_due`: ready shortly before it is
due, from a running estimate of chunk time) and puts made chunks on a `Playout`.

When a command changes what is made, its owner asks `landing()` where it lands and calls
`rollback(chunk)`: chunks from there on that are queued are dropped, the one being made is
abandoned at the engine's next step (its `should_cancel` sees the timeline move on), the
source undoes its claims and the driver reopens the stream at that boundary, so the next
chunk made is that one again, under the new conditions. Made chunks never reach the playout
once their timeline is over.

No prefetching: a chunk made ahead under old conditions would only be thrown away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from helios_serve.core.protocols import Engine, Upscaler
from helios_serve.core.types import Frames
from helios_serve.errors import StreamCancelledError
from helios_serve.realtime.driver import Conditions, StreamDriver, StreamOptions
from helios_serve.realtime.pacing import ChunkTimer, until_due
from helios_serve.realtime.playout import MadeChunk, Playout
from helios_serve.realtime.steering import Outlook, landing_chunk

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    index: int
    conditions: Conditions


class ChunkSource(Protocol):
    def wanted(self) -> bool:
        """Whether another chunk should be made (started, not paused, not finished)."""
        ...

    def claim(self) -> Claimed:
        """Fix the next chunk's index and conditions."""
        ...

    def unclaim(self, chunk: int) -> None:
        """Chunks from `chunk` on will be made again: undo their claims."""
        ...

    def made(self, claimed: Claimed, frames: Frames) -> None:
        """Chunk `claimed.index` is on the playout."""
        ...

    def started(self, chunk: MadeChunk, pts: int | None) -> None:
        """Its first frame went out: it and the chunks before it are fixed."""
        ...

    def failed(self, claimed: Claimed, exc: Exception) -> bool:
        """Making it failed; True to go on (the chunk is made again when wanted)."""
        ...


@dataclass
class GenerationStats:
    """What the engine's time went to, reported in the session's `state` (`generation`)."""

    chunks_made: int = 0
    chunks_shown: int = 0
    chunks_dropped: int = 0
    """Made, then dropped by a change before they showed."""
    chunks_abandoned: int = 0
    """Stopped part-way by a change."""
    rollbacks: int = 0
    engine_s: float = 0.0
    wasted_s: float = 0.0
    """Engine time of dropped and abandoned chunks."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunks_made": self.chunks_made,
            "chunks_shown": self.chunks_shown,
            "chunks_dropped": self.chunks_dropped,
            "chunks_abandoned": self.chunks_abandoned,
            "rollbacks": self.rollbacks,
            "engine_s": round(self.engine_s, 3),
            "wasted_s": round(self.wasted_s, 3),
        }


class Generation:
    def __init__(
        self,
        engine: Engine,
        options: StreamOptions,
        upscale: Upscaler,
        playout: Playout,
        source: ChunkSource,
    ) -> None:
        self._options = options
        self._playout = playout
        self._source = source
        self.driver = StreamDriver(
            engine, options, upscale, defer_resampling=getattr(playout, "resamples", False)
        )
        self.timer = ChunkTimer()
        self.stats = GenerationStats()
        self._wake = asyncio.Event()
        self._timeline = 0
        """Bumped by every rollback and stop: what an older timeline makes is thrown away."""
        self._in_flight: Claimed | None = None
        self._in_flight_since = 0.0
        self._steps = 1
        self._made_s: dict[int, float] = {}
        """Engine seconds of the chunks on the playout not yet shown."""
        self._task: asyncio.Task[None] | None = None
        playout.listen(self._started, self._wake.set)

    @property
    def busy(self) -> bool:
        """A chunk is being made, or made and not yet on the playout."""
        return self._in_flight is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="generation")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop making chunks and drop everything not shown (reset, close)."""
        self._timeline += 1  # the engine's cancel check fires at its next step
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.driver.close()
        self._playout.clear()
        self._made_s.clear()

    # ------------------------------------------------------------------ steering
    def landing(self, committed: int, claimed: int) -> int:
        """The first chunk a change made now applies to (`steering.landing_chunk`)."""
        return landing_chunk(
            self._options.latency, committed, claimed, self._outlook(committed, claimed)
        )

    def _outlook(self, committed: int, claimed: int) -> Outlook | None:
        """What each landing would cost, from the timer's (cautious) chunk time."""
        lead, to_boundary = self.timer.lead(self._steps), self._playout.to_boundary()
        if lead is None or to_boundary is None:
            return None
        flight = self._in_flight
        # a remake waits for the chunk being made to let go (about a step) and a reopen
        let_go = (self.timer.step_s or 0.0) if flight is not None else 0.0
        remake = lead + self.timer.open_s + let_go
        next_ready = 0.0
        if flight is not None and flight.index == committed:
            next_ready = max(0.0, self._in_flight_since + lead - time.perf_counter())
        next_remake = remake if claimed > committed + 1 else next_ready + lead
        return Outlook(to_boundary, remake, next_ready, next_remake, self._playout.playback_s)

    def rollback(self, chunk: int) -> None:
        """Make chunk `chunk` next again: drop and abandon everything made from it on."""
        self._timeline += 1
        dropped = self._playout.drop_from(chunk)
        self.stats.rollbacks += 1
        self.stats.chunks_dropped += len(dropped)
        for index in dropped:
            self.stats.wasted_s += self._made_s.pop(index, 0.0)
        self._source.unclaim(chunk)
        self.driver.rewind(chunk)
        self._wake.set()

    def _started(self, chunk: MadeChunk, pts: int | None) -> None:
        self.stats.chunks_shown += 1
        self._made_s.pop(chunk.index, None)
        self.driver.forget_before(chunk.index + 1)
        self._source.started(chunk, pts)
        self._wake.set()

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        while True:
            if not self._source.wanted():
                self._wake.clear()
                await self._wake.wait()
                continue
            await until_due(self._playout, self.timer, self._steps, self._wake, self._source.wanted)
            if self._source.wanted() and not await self._make(self._source.claim()):
                return

    async def _make(self, claimed: Claimed) -> bool:
        """Make one chunk and put it out unless its timeline ended; False ends the loop."""
        self._in_flight, self._in_flight_since = claimed, time.perf_counter()
        try:
            return await self._make_and_put(claimed)
        finally:
            self._in_flight = None

    async def _make_and_put(self, claimed: Claimed) -> bool:
        timeline = self._timeline
        start = time.perf_counter()
        try:
            made = await self.driver.make_chunk(
                claimed.index, claimed.conditions, lambda: self._timeline != timeline
            )
        except StreamCancelledError:
            self.stats.chunks_abandoned += 1
            self._waste(time.perf_counter() - start)
            return True
        except Exception as exc:
            if self._timeline != timeline:
                self._waste(time.perf_counter() - start)
                return True
            self.driver.rewind(claimed.index)
            return self._source.failed(claimed, exc)
        self.timer.observe(made.engine_s, made.steps)
        if made.reopen_s is not None:
            self.timer.observe_open(made.reopen_s)
        self._steps = made.steps
        self.stats.chunks_made += 1
        self.stats.engine_s += made.engine_s + (made.reopen_s or 0.0)
        while self._timeline == timeline and not self._playout.has_room():
            self._wake.clear()
            await self._wake.wait()
        if self._timeline != timeline:  # a change reached it before it went out
            self.stats.chunks_dropped += 1
            self.stats.wasted_s += made.engine_s
            return True
        self._made_s[claimed.index] = made.engine_s
        self._playout.push(
            MadeChunk(claimed.index, made.frames, claimed.conditions.prompt, made.scale)
        )
        self._source.made(claimed, made.frames)
        return True

    def _waste(self, seconds: float) -> None:
        self.stats.engine_s += seconds
        self.stats.wasted_s += seconds
