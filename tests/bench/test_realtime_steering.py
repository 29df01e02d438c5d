"""Steering measured from frame codes: the analysis on made-up frames, and a real run of
`helios bench-realtime --engine paced:...` (a `helios serve` subprocess, an aiortc client)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helios_bench.realtime import main
from helios_bench.realtime_analysis import ReceivedFrame
from helios_bench.realtime_client import Event
from helios_bench.realtime_playback import playback
from helios_bench.realtime_steering import SentCommand, SteeringRun, analyse, stalls
from helios_serve.core.framecode import FrameCode, prompt_tag

FPS = 24.0


def frames_of(codes: list[FrameCode | None], t0: float = 0.0) -> list[ReceivedFrame]:
    return [ReceivedFrame(t0 + i / FPS, i, 0.0, c) for i, c in enumerate(codes)]


def chunk(index: int, prompt: str, frames: range = range(33)) -> list[FrameCode | None]:
    return [FrameCode(index, i, prompt_tag(prompt)) for i in frames]


def test_repeated_codes_are_stalls_and_the_placeholder_is_not() -> None:
    codes = [None] * 5 + chunk(0, "a") + [FrameCode(0, 32, prompt_tag("a"))] * 4 + chunk(1, "a")
    found = stalls(frames_of(codes))
    assert [(round(s.t * FPS), s.ticks) for s in found] == [(5 + 33, 4)]
    # a lost tick inside a run of repeats still counts as a repeated tick
    lossy = [f for f in frames_of(codes) if f.tick != 40]
    assert [s.ticks for s in stalls(lossy)] == [4]
    assert stalls(frames_of(chunk(0, "a") + chunk(1, "a"))) == []


def test_effective_rate_and_frozen_time_as_played_and_as_arrived() -> None:
    codes = chunk(0, "a")

    def at(times: list[float], pts: list[float] | None = None) -> list[ReceivedFrame]:
        return [
            ReceivedFrame(t, i, 0.0, c, None if pts is None else pts[i])
            for i, (t, c) in enumerate(zip(times, codes, strict=False))
        ]

    steady = playback(at([i / 24 for i in range(33)]), FPS)
    assert steady["effective_fps"] == pytest.approx(24.0)
    assert (steady["frozen_s"], steady["freezes"]) == (0.0, 0)
    slower = playback(at([i / 16 for i in range(33)]), FPS)  # played slower: no freeze
    assert slower["effective_fps"] == pytest.approx(16.0)
    assert slower["freezes"] == 0
    # the same frame sent again for half a second (repeats), then the next chunk
    held = at([i / 24 for i in range(33)])
    held += [ReceivedFrame(33 / 24 + i / 24, 33 + i, 0.0, codes[-1]) for i in range(12)]
    held += [ReceivedFrame(45 / 24 + i / 24, 45 + i, 0.0, c) for i, c in enumerate(chunk(1, "a"))]
    report = playback(held, FPS)
    assert report["freezes"] == 1
    assert report["frozen_s"] == pytest.approx(12 / 24, abs=1e-3)  # 13 intervals, one normal
    assert report["frozen_share"] == pytest.approx(0.5 / (77 / 24), abs=1e-3)
    # played evenly (pts), but the client got them in bursts: frozen only on arrival
    bursts = [(i // 8) * 8 / 24 for i in range(33)]
    jittered = playback(at(bursts, [i / 24 for i in range(33)]), FPS)
    assert (jittered["freezes"], jittered["effective_fps"]) == (0, pytest.approx(24.0))
    assert jittered["arrival"]["freezes"] == 4


def test_latency_wasted_chunks_and_event_offsets() -> None:
    a, b = "first prompt", "second prompt"
    # chunk 0 and 1 with a; the command at chunk 1 frame 10; a stall of 6 ticks; chunk 2 with b
    codes = chunk(0, a) + chunk(1, a) + [FrameCode(1, 32, prompt_tag(a))] * 6 + chunk(2, b)
    frames = frames_of(codes, t0=1.0)
    sent = frames[33 + 10].t
    first_b = frames[33 + 33 + 6]
    events = [
        Event(1.0 + 0.5, "chunk_complete", {"chunk_index": 0, "active_prompt": a}),
        Event(2.0, "chunk_complete", {"chunk_index": 1, "active_prompt": a}),
        Event(2.5, "chunk_complete", {"chunk_index": 2, "active_prompt": a}),  # dropped
        Event(first_b.t - 0.2, "chunk_complete", {"chunk_index": 2, "active_prompt": b}),
        Event(first_b.t - 0.03, "chunk_shown", {"chunk_index": 2, "active_prompt": b}),
        Event(first_b.t + 1, "state", {"generation": {"chunks_made": 4}}),
    ]
    run = SteeringRun(
        fps=FPS,
        start_t=0.5,
        frames=frames,
        events=events,
        steady=(frames[0].t, frames[33].t),
        commands=[SentCommand(b, sent)],
        paused_t=frames[-1].t + 1,
    )
    report = analyse(run)
    assert report["start_to_first_frame_s"] == pytest.approx(0.5)
    lat = report["commands"]["first_changed_frame_s"]
    assert lat["n"] == 1
    assert lat["max"] == pytest.approx(first_b.t - sent, abs=1e-4)
    each = report["commands"]["each"][0]
    assert (each["chunk"], each["frame_in_chunk"]) == (2, 0)
    assert each["stall_before_s"] == pytest.approx(6 / FPS, abs=1e-3)
    assert report["steady"]["stalls"]["count"] == 0
    assert report["commands"]["stalls"]["count"] == 1
    wasted = report["wasted_generation"]
    assert (wasted["chunks_made"], wasted["chunks_made_never_shown"]) == (4, 1)
    assert wasted["never_shown"] == [{"chunk": 2, "tag": prompt_tag(a)}]
    assert wasted["server_reported"] == {"chunks_made": 4}
    assert report["chunk_shown_vs_pixels_ms"]["max"] == pytest.approx(30.0, abs=0.1)


@pytest.fixture(scope="module")
def paced_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench-steer") / "paced"
    argv = ["--engine", "paced:0.4", "--data-dir", str(tmp_path_factory.mktemp("data"))]
    argv += ["--steady-chunks", "2", "--commands", "3", "--timeout", "60", "--out", str(out)]
    assert main(argv) == 0
    doc: dict[str, Any] = json.loads(out.with_name("paced.json").read_text())
    assert out.with_name("paced.png").stat().st_size > 10_000
    return doc


def test_a_paced_run_is_measured_from_pixels(paced_report: dict[str, Any]) -> None:
    report = paced_report
    assert report["command"].startswith("helios bench-realtime --engine paced:0.4")
    assert (report["engine"], report["model"]) == ("paced:0.4", "paced")
    assert report["size"]["width"] == 192
    steering = report["steering"]
    assert steering["start_to_first_frame_s"] > 0
    assert steering["commands"]["count"] == 3
    assert steering["commands"]["first_changed_frame_s"]["n"] == 3
    # each change was seen on screen in a chunk after the one it was sent in
    chunks = [c["chunk"] for c in steering["commands"]["each"]]
    assert chunks == sorted(chunks)
    assert len(set(chunks)) == 3
    assert steering["steady"]["chunks"] == 2
    assert steering["wasted_generation"]["chunks_made"] >= 2 + 3
    assert report["timeline"]["t_s"]
