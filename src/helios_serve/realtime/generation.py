"""Generation: the loop that makes chunks just in time and remakes those a change reaches.

It serves a Reactor session and a `/v1/realtime/video` socket alike. A `ChunkSource` (the
session's state machine, the socket's interactions) says whether a chunk is wanted and what
each one is made with; the loop decides when (`pacing.until_due`: ready shortly before it is
due, from a running estimate of chunk time) and puts made chunks on a `Playout`.

Frames reach the playout as the engine decodes them (`Stream.next_chunk(on_frames=...)`): a
chunk is queued with its first frames and grows until its decode ends, so it may start playing
before that. The loop plans on when a chunk's first frames are needed (`ChunkTimer.lead`) and
tells the playout when it expects the next frames (`supply`), which playback slows for when
the engine falls behind (`playback`).

When a command changes what is made, its owner asks `landing()` where it lands and calls
`rollback(chunk)`: chunks from there on that are queued are dropped (with whatever of them was
decoded: none of it has been shown), the one being made is abandoned at the engine's next step
or decoded group if it is one of them (its `should_cancel` sees it abandoned), the source
undoes its claims and the driver reopens the stream at that boundary, so the next chunk made
is that one again, under the new conditions. A chunk being made before the landing goes on
(it may be on screen already). An abandoned chunk's frames never reach the playout.

No prefetching: a chunk made ahead under old conditions would only be thrown away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from helios_serve.core.protocols import Engine, Upscaler
from helios_serve.core.types import DecodedFrames, Frames
from helios_serve.errors import StreamCancelledError
from helios_serve.realtime.driver import Conditions, StreamDriver, StreamOptions
from helios_serve.realtime.forecast import Flight, Forecast
from helios_serve.realtime.pacing import until_due
from helios_serve.realtime.playout import MadeChunk, Playout
from helios_serve.realtime.steering import landing_chunk

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
        self.forecast = Forecast()
        self.stats = GenerationStats()
        self._wake = asyncio.Event()
        self._flight: Flight | None = None
        self._made_s: dict[int, float] = {}
        """Engine seconds of the chunks on the playout not yet shown."""
        self._task: asyncio.Task[None] | None = None
        playout.listen(self._started, self._wake.set, self.supply)

    @property
    def busy(self) -> bool:
        """A chunk is being made."""
        return self._flight is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="generation")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop making chunks and drop everything not shown (reset, close)."""
        if self._flight is not None:
            self._flight.abandoned = True  # the engine's cancel check fires at its next step
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
        outlook = self.forecast.outlook(self._playout, self._flight, committed, claimed)
        return landing_chunk(self._options.latency, committed, claimed, outlook)

    def rollback(self, chunk: int) -> None:
        """Make chunk `chunk` next again: drop and abandon everything made from it on."""
        flight = self._flight
        if flight is not None and flight.index >= chunk:
            flight.abandoned = True  # counted when the engine lets go of it
        dropped = [i for i in self._playout.drop_from(chunk) if flight is None or i != flight.index]
        self.stats.rollbacks += 1
        self.stats.chunks_dropped += len(dropped)
        for index in dropped:
            self.stats.wasted_s += self._made_s.pop(index, 0.0)
        self._source.unclaim(chunk)
        self.driver.rewind(chunk)
        self._wake.set()

    def playback(self) -> dict[str, Any]:
        """The playout's playback rate (the session's `state.playback`)."""
        return self._playout.playback()

    def _started(self, chunk: MadeChunk, pts: int | None) -> None:
        self.stats.chunks_shown += 1
        self._made_s.pop(chunk.index, None)
        self.driver.forget_before(chunk.index + 1)
        self._source.started(chunk, pts)
        self._wake.set()

    def supply(self) -> list[tuple[float, int]]:
        """When the next frames are expected (`Forecast.supply`)."""
        return self.forecast.supply(
            self._playout,
            self._flight,
            wanted=self._source.wanted(),
            reopen=self.driver.will_reopen,
        )

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        while True:
            if not self._source.wanted():
                self._wake.clear()
                await self._wake.wait()
                continue
            f = self.forecast
            await until_due(self._playout, f.timer, f.steps, self._wake, self._source.wanted)
            if self._source.wanted() and not await self._make(self._source.claim()):
                return

    async def _make(self, claimed: Claimed) -> bool:
        """Make one chunk, its frames going out as they come; False ends the loop."""
        flight = Flight(claimed.index, time.perf_counter(), self.driver.will_reopen)
        self._flight = flight
        try:
            return await self._make_and_put(claimed, flight)
        finally:
            self._flight = None

    def _hand_over(self, c: Claimed, flight: Flight, decoded: DecodedFrames) -> None:
        """Frames of the chunk being made, as they are decoded: onto the playout."""
        if flight.abandoned:
            return
        flight.arrivals.append((time.perf_counter(), len(decoded.frames)))
        if flight.chunk is None:
            scale = self.driver.deferred_scale(c.conditions)
            flight.chunk = MadeChunk(c.index, None, c.conditions.prompt, scale)
            flight.chunk.add(decoded.frames)
            self._playout.push(flight.chunk)
        else:
            flight.chunk.add(decoded.frames)
            self._playout.grew(flight.chunk)

    async def _make_and_put(self, claimed: Claimed, flight: Flight) -> bool:
        start = flight.since
        try:
            made = await self.driver.make_chunk(
                claimed.index,
                claimed.conditions,
                lambda: flight.abandoned,
                lambda decoded: self._hand_over(claimed, flight, decoded),
            )
        except StreamCancelledError:
            self.stats.chunks_abandoned += 1
            self._waste(time.perf_counter() - start)
            return True
        except Exception as exc:
            if flight.abandoned:
                self._waste(time.perf_counter() - start)
                return True
            self._cut_short(flight)
            self.driver.rewind(claimed.index)
            return self._source.failed(claimed, exc)
        self.forecast.observe(made, flight.arrivals, self._playout.playback_s)
        self.stats.chunks_made += 1
        self.stats.engine_s += made.engine_s + (made.reopen_s or 0.0)
        if flight.abandoned:  # a change reached it after its last frames
            self.stats.chunks_dropped += 1
            self.stats.wasted_s += made.engine_s
            return True
        if flight.chunk is None:  # an engine that hands a chunk over whole
            flight.chunk = MadeChunk(claimed.index, made.frames, claimed.conditions.prompt)
            flight.chunk.scale = made.scale
            self._playout.push(flight.chunk)
        else:
            flight.chunk.finish()
            self._playout.grew(flight.chunk)
        if self._playout.committed <= claimed.index:  # not on screen yet: a change may drop it
            self._made_s[claimed.index] = made.engine_s
        self._source.made(claimed, made.frames)
        return True

    def _cut_short(self, flight: Flight) -> None:
        """A chunk that failed part-way: what of it is on screen ends there; the rest goes."""
        chunk = flight.chunk
        if chunk is None:
            return
        if self._playout.committed > chunk.index:
            chunk.finish()
            self._playout.grew(chunk)
        else:
            self._playout.drop_from(chunk.index)

    def _waste(self, seconds: float) -> None:
        self.stats.engine_s += seconds
        self.stats.wasted_s += seconds
