"""The pure parts of steering: where a change lands, the chunk timer, the playouts' clocks,
and undoing claims in the state machine."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from helios_serve.realtime.pacing import ChunkTimer
from helios_serve.realtime.playout import FrameBuffer, MadeChunk
from helios_serve.realtime.reactor import state_machine as sm
from helios_serve.realtime.steering import LatencyMode, Outlook, landing_chunk
from helios_serve.realtime.ws.stream import SocketPlayout

LOW, SMOOTH = LatencyMode.LOW, LatencyMode.SMOOTH


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def chunk(index: int, frames: int = 33, prompt: str = "p") -> MadeChunk:
    return MadeChunk(index, np.zeros((frames, 2, 2, 3), np.uint8), prompt)


BALANCED = LatencyMode.BALANCED
ALL = (LOW, BALANCED, SMOOTH)


def outlook(
    to_boundary: float, remake: float, next_ready: float = 0.0, lead: float = 1.2
) -> Outlook:
    """A chunk plays for 1.375 s (24 fps); chunk c+1 is made after c unless it was made."""
    return Outlook(to_boundary, remake, next_ready, next_ready + lead, 1.375)


@pytest.mark.parametrize("mode", ALL)
def test_nothing_made_past_the_screen_or_no_timing_yet_lands_on_the_next_chunk(
    mode: LatencyMode,
) -> None:
    assert landing_chunk(mode, 5, 5, outlook(0.1, 1.4)) == 5  # the next chunk made takes it
    assert landing_chunk(mode, 5, 7, None) == 5  # nobody plays, or no chunk timed yet


@pytest.mark.parametrize(
    ("outlook_", "low", "balanced", "smooth"),
    [
        # early in the chunk on screen: the remake is ready before it is due, no hold
        (outlook(1.3, 1.2), 5, 5, 5),
        # mid-chunk: a 0.6 s hold brings the change 0.775 s sooner
        (outlook(0.8, 1.4), 5, 5, 6),
        # late: a 1.2 s hold for 0.175 s sooner is not worth it unless latency is all that counts
        (outlook(0.2, 1.4), 5, 6, 6),
        # an engine slower than real time, chunk c almost made: remaking it shows nothing sooner
        (Outlook(0.0, 1.9, 0.1, 1.9, 1.375), 6, 6, 6),
        # ... and chunk c just started: remaking it now is sooner and holds no longer
        (Outlook(0.0, 1.9, 1.6, 3.4, 1.375), 5, 5, 5),
    ],
)
def test_where_a_change_lands(outlook_: Outlook, low: int, balanced: int, smooth: int) -> None:
    got = [landing_chunk(mode, 5, 7, outlook_) for mode in ALL]
    assert got == [low, balanced, smooth]


def test_chunk_timer_scales_with_steps_and_widens_with_jitter() -> None:
    timer = ChunkTimer(margin_s=0.1)
    assert timer.lead(3) is None
    timer.observe(1.2, 3)
    for _ in range(40):
        timer.observe(1.2, 3)
    steady = timer.lead(3)
    assert steady == pytest.approx(1.3, abs=0.01)  # the estimate plus the margin, no jitter left
    assert timer.lead(6) == pytest.approx(2.5, abs=0.02)  # an amplified chunk: twice the steps
    timer.observe(2.4, 3)  # one slow chunk (a job on the worker): the lead widens at once
    widened = timer.lead(3)
    assert widened is not None
    assert widened > steady + 1.0
    for _ in range(40):
        timer.observe(1.2, 3)
    narrowed = timer.lead(3)
    assert narrowed is not None
    assert narrowed < steady + 0.05
    timer.observe_open(0.2)
    timer.observe_open(0.2)
    assert timer.open_s == pytest.approx(0.2)


def test_frame_buffer_knows_what_is_on_screen_and_when_the_next_chunk_is_due() -> None:
    clock = Clock()
    buf = FrameBuffer(fps=10, max_chunks=2, clock=clock)
    started: list[tuple[int, int | None]] = []
    rooms = []
    buf.listen(lambda c, pts: started.append((c.index, pts)), lambda: rooms.append(1), list)
    assert buf.time_left() is None  # nobody pulls frames yet
    assert buf.pop(0) is None  # the track pulls its placeholder
    assert buf.time_left() == 0.0  # the first chunk is due now
    buf.push(chunk(0, 5))
    buf.push(chunk(1, 5))
    assert not buf.has_room()
    assert (buf.committed, buf.time_left(), buf.to_boundary()) == (0, 1.0, 0.0)
    clock.t += 0.1
    buf.pop(9000)
    assert started == [(0, 9000)]
    assert buf.committed == 1
    assert buf.has_room()  # chunk 0 is playing: only chunk 1 waits
    assert buf.time_left() == pytest.approx(0.9)  # 4 frames of 0 and 5 of 1 to go
    assert buf.to_boundary() == pytest.approx(0.4)  # chunk 1 starts after 0's last 4 frames
    assert buf.drop_from(0) == [1]  # the chunk playing stays, the one waiting goes
    assert buf.queued_chunks == 1
    for _ in range(4):
        clock.t += 0.1
        buf.pop()
    assert buf.queued_chunks == 0
    assert buf.time_left() == 0.0  # starving: needed now
    clock.t += 1.0
    assert buf.time_left() is None  # the consumer went away (a paused track)
    buf.clear()
    assert buf.committed == 0


def test_socket_playout_sends_each_chunk_ahead_of_the_clients_playback() -> None:
    clock = Clock()

    async def main() -> None:
        finished = [False]
        out = SocketPlayout(fps=33, send_ahead_s=0.25, finished=lambda: finished[0], clock=clock)
        out.push(chunk(0))
        first = await out.next_due()  # due at once: the client plays nothing yet
        assert first is not None
        assert (first.index, out.committed) == (0, 1)
        out.push(chunk(1))
        out.push(chunk(2))
        assert out.to_boundary() == pytest.approx(0.75)  # 1 s of chunk 0 minus the lead
        assert out.time_left() == pytest.approx(2.75)
        assert out.drop_from(2) == [2]
        getter = asyncio.ensure_future(out.next_due())
        await asyncio.sleep(0.02)
        assert not getter.done()  # not due yet
        clock.t += 0.75
        out.push(chunk(2))  # wakes the sender, which finds chunk 1 due
        second = await asyncio.wait_for(getter, 1)
        assert second is not None
        assert second.index == 1
        clock.t += 1.0
        third = await out.next_due()
        assert third is not None
        assert third.index == 2
        finished[0] = True
        assert await asyncio.wait_for(out.next_due(), 1) is None

    asyncio.run(main())


def running() -> sm.SessionState:
    return sm.start(sm.set_prompt(sm.SessionState(), "a"))


def test_rewind_undoes_claims_of_chunks_not_shown() -> None:
    s = sm.schedule_prompt(running(), "b", 2)
    for _ in range(4):  # chunks 0..3 claimed and made: 0 and 1 use a, 2 and 3 use b
        s, _ = sm.claim_chunk(s)
        s = sm.complete_chunk(s, 33)
    s = sm.chunk_shown(s, 1)  # 0 and 1 on screen
    assert (s.shown, s.next_chunk, s.current_prompt) == (2, 4, "b")
    assert [c.index for c in s.claims] == [2, 3]
    assert sm.first_changeable(s) == 2
    with pytest.raises(sm.CommandError, match="chunk_already_generated"):
        sm.check_schedulable(s, 1)
    back = sm.rewind(s, 2)
    assert (back.next_chunk, back.completed, back.frames) == (2, 2, 66)
    assert back.current_prompt == "a"
    assert back.prompts == ((2, "b"),)  # the scheduled prompt is due again at its chunk
    assert sm.claim_chunk(back)[1].prompt == "b"
    assert sm.rewind(s, 4) == s  # nothing claimed from 4 on
    paused = sm.pause(s)
    assert sm.first_changeable(paused) == 4  # paused: what is made stays


def test_extra_args_latency_chooses_the_mode_and_a_bad_one_is_a_400() -> None:
    from helios_serve.engine.fake import FakeEngineConfig
    from helios_serve.realtime.reactor.request import stream_overrides
    from helios_serve.web.errors import ApiError

    info = FakeEngineConfig().info
    assert stream_overrides({"latency": "smooth"}, info) == {"latency": SMOOTH}
    assert stream_overrides({}, info) == {}  # the server's default (smooth)
    for bad in ("fast", 1, None, ["low"]):
        with pytest.raises(ApiError) as refused:
            stream_overrides({"latency": bad}, info)
        assert refused.value.status == 400
