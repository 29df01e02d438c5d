"""`/v1/realtime/video` on the shared `Generation`: its playout and its chunk source.

`SocketPlayout`: a chunk is committed once its bytes are sent. Sending is paced by a model of
the client's player: it plays each chunk right after the one before, or when it arrives if
that is later, so chunk k is sent `send_ahead_s` before the client will need it (room to
encode it and carry it over the network). A chunk made but not yet sent can still be remade.
A chunk is sent whole (one fragment), once its decode has ended. Its frames carry durations
(`MadeChunk.durations`): at the nominal rate while the engine keeps up; when the next chunk
would come too late for that, the rate eases down (to the floor at most, `playback`) so
the client's playback lasts until it does, the same pacing as the WebRTC track's.

`InteractionSource`: the prompt of each chunk from `session.interaction`s. At each chunk it
applies the queued interactions (the newest is faded in over its `transition_chunks`, earlier
ones are superseded) and records the event ids the chunk's metadata reports. Claims keep what
they changed, so a rollback puts the interactions they applied back in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from helios_serve.core.types import FRAMES_PER_CHUNK, Frames
from helios_serve.errors import HeliosError
from helios_serve.realtime.driver import Conditions
from helios_serve.realtime.generation import Claimed
from helios_serve.realtime.playback import PlaybackRate
from helios_serve.realtime.playout import MadeChunk, Started, SupplyForecast
from helios_serve.realtime.ws.start import Interaction, Plan

logger = logging.getLogger(__name__)
Events = dict[str, list[str]]
FINISHED_POLL_S = 0.05
"""While nothing is queued, how often `next_due` checks whether generation has ended."""


class SocketPlayout:
    def __init__(
        self,
        fps: float,
        send_ahead_s: float,
        finished: Callable[[], bool],
        max_chunks: int = 2,
        clock: Callable[[], float] = time.monotonic,
        rate: PlaybackRate | None = None,
    ) -> None:
        """`finished()`: no more chunks will be made (checked while nothing is queued)."""
        self.rate = rate or PlaybackRate(fps, clock=clock)
        self._finished = finished
        self._chunk_s = FRAMES_PER_CHUNK / self.rate.nominal
        self._ahead = send_ahead_s
        self._max = max_chunks
        self._clock = clock
        self._queue: deque[MadeChunk] = deque()
        self._committed = 0
        self._play_end: float | None = None
        """When the client will have played every chunk sent (None before the first)."""
        self._changed = asyncio.Event()
        self._closed = False
        self._started: Started | None = None
        self._room: Callable[[], None] | None = None
        self._supply: SupplyForecast = lambda: ()

    def listen(self, started: Started, room: Callable[[], None], supply: SupplyForecast) -> None:
        self._started, self._room, self._supply = started, room, supply

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def playback_s(self) -> float:
        return self._chunk_s

    def _send_at(self, queued: int) -> float:
        """When the chunk `queued` places after the next unsent one should be sent."""
        if self._play_end is None:
            return self._clock() if queued == 0 else self._clock() + queued * self._chunk_s
        return self._play_end + queued * self._chunk_s - self._ahead

    def time_left(self) -> float | None:
        return max(0.0, self._send_at(len(self._queue)) - self._clock())

    def to_boundary(self) -> float | None:
        return max(0.0, self._send_at(0) - self._clock())

    def slack(self) -> tuple[float, float]:
        # what is sent plays as sent; the next chunk sent may play slower
        return 0.0, max(0.0, self.rate.longest(FRAMES_PER_CHUNK) - self._chunk_s)

    def has_room(self) -> bool:
        return len(self._queue) < self._max

    def push(self, chunk: MadeChunk) -> None:
        self._queue.append(chunk)
        self._changed.set()

    def grew(self, chunk: MadeChunk) -> None:  # noqa: ARG002  # sent once complete
        self._changed.set()

    def drop_from(self, index: int) -> list[int]:
        dropped = [c.index for c in self._queue if c.index >= index]
        self._queue = deque(c for c in self._queue if c.index < index)
        if dropped and self._room is not None:
            self._room()
        return dropped

    def clear(self) -> None:
        self._queue.clear()
        self._closed = True
        self._changed.set()

    def playback(self) -> dict[str, Any]:
        return self.rate.as_dict()

    async def next_due(self) -> MadeChunk | None:
        """The next chunk, once it is made and due to be sent (it is then committed, its
        `durations` set); None at the end."""
        while True:
            self._changed.clear()
            if self._queue and self._queue[0].complete:
                wait = self._send_at(0) - self._clock()
                if wait <= 0:
                    return self._send()
            elif self._queue:
                wait = FINISHED_POLL_S  # its decode goes on: `grew` wakes this
            elif self._closed or self._finished():
                return None
            else:
                wait = FINISHED_POLL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    def _send(self) -> MadeChunk:
        chunk = self._queue.popleft()
        now = self._clock()
        start = max(self._play_end or now, now)
        chunk.durations = self._durations(chunk, start - now)
        self._play_end = start + sum(chunk.durations)
        self._committed = chunk.index + 1
        if self._started is not None:
            self._started(chunk, None)
        if self._room is not None:
            self._room()
        return chunk

    def _durations(self, chunk: MadeChunk, starts_in: float) -> list[float]:
        """Frame durations for `chunk`, so that the client plays until the next one is there."""
        rate = self.rate
        after = self._queue[0] if self._queue else None
        needed = 0 if after is not None and after.complete else FRAMES_PER_CHUNK
        if after is not None and not after.complete:
            needed = after.pending
        sendable, total = 0.0, 0
        for seconds, count in self._supply() if needed else ():
            total += count
            sendable = seconds
            if total >= needed:
                break
        if needed and total >= needed:
            # frames in hand: this chunk's; the next chunk must arrive before they run out
            rate.target = rate.target_for(chunk.num_frames, [(sendable + self._ahead - starts_in,
                                                              FRAMES_PER_CHUNK)])  # fmt: skip
        else:
            rate.target = rate.nominal
        return [1.0 / rate.ease() for _ in range(chunk.num_frames)]


@dataclass(frozen=True)
class _Undo:
    """The interaction state before a chunk was claimed."""

    pending: tuple[Interaction, ...]
    active: tuple[Interaction, ...]
    prompt: str
    blend: int


class InteractionSource:
    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._prompt = plan.request.prompt
        self._blend = 1
        self._pending: list[Interaction] = []
        self._active: list[Interaction] = []
        self._undo: dict[int, _Undo] = {}
        self.events: dict[int, Events] = {}
        """The event ids each claimed chunk's metadata reports."""
        self.claimed = 0
        self.committed = 0
        self.stopped = False
        self.error: str | None = None

    def add(self, interaction: Interaction) -> None:
        self._pending.append(interaction)

    # -------------------------------------------------------------- ChunkSource
    def wanted(self) -> bool:
        return not self.stopped and self.error is None and self.claimed < self._plan.chunks

    def claim(self) -> Claimed:
        index = self.claimed
        self._undo[index] = _Undo(
            tuple(self._pending),
            tuple(replace(e) for e in self._active),  # copies: claims change last_chunk
            self._prompt,
            self._blend,
        )
        self.events[index] = self._boundary(index)
        self.claimed = index + 1
        request = self._plan.request
        return Claimed(index, Conditions(self._prompt, self._blend, seed=request.seed))

    def unclaim(self, chunk: int) -> None:
        undo = self._undo.get(chunk)
        if undo is None:
            return
        self._pending = [*undo.pending, *self._pending]  # then those that came since
        self._active, self._prompt, self._blend = list(undo.active), undo.prompt, undo.blend
        self._undo = {i: u for i, u in self._undo.items() if i < chunk}
        self.events = {i: e for i, e in self.events.items() if i < chunk}
        self.claimed = chunk

    def made(self, claimed: Claimed, frames: Frames) -> None:  # noqa: ARG002
        return None  # the playout sends it when it is due

    def started(self, chunk: MadeChunk, pts: int | None) -> None:  # noqa: ARG002
        self.committed = chunk.index + 1
        self._undo = {i: u for i, u in self._undo.items() if i > chunk.index}

    def failed(self, claimed: Claimed, exc: Exception) -> bool:
        logger.error("ws stream chunk %d failed", claimed.index, exc_info=exc)
        code = exc.code if isinstance(exc, HeliosError) else "internal_error"
        self.error = f"generation failed ({code}); the server log has the details"
        return False

    def _boundary(self, index: int) -> Events:
        """Apply queued prompts before chunk `index`; the event ids its metadata reports."""
        pending, self._pending = self._pending, []
        completed = [e.event_id for e in self._active + pending[:-1]] if pending else []
        if pending:  # only the newest prompt is blended in; earlier ones are superseded
            event = pending[-1]
            self._prompt, self._blend = event.prompt, event.blend
            event.last_chunk = index + event.blend - 1
            self._active = [event]
        active = [e.event_id for e in self._active]
        completed += [e.event_id for e in self._active if e.last_chunk == index]
        self._active = [e for e in self._active if e.last_chunk > index]
        started = [e.event_id for e in pending]
        return {"started_event_ids": started, "active_event_ids": active,
                "completed_event_ids": completed}  # fmt: skip
