"""`helios bench-realtime` against a real `helios serve` subprocess (tiny model, CPU), plus the
chunk-assignment rule on a simulated paced track."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from helios_bench.realtime import main, register_realtime
from helios_bench.realtime_analysis import (
    ChunkDone,
    ReceivedFrame,
    calibrate_bias,
    chunk_playback,
    summary,
)

STAT_KEYS = {"mean", "std", "p50", "p95", "p99", "max"}


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@pytest.fixture(scope="module")
def report(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench-rt") / "tiny"
    argv = ["--model", "tiny", "--data-dir", str(data_dir), "--width", "64", "--height", "64"]
    argv += ["--chunks", "2", "--prompt-changes", "1", "--timeout", "120", "--out", str(out)]
    assert main(argv) == 0
    assert out.with_name("tiny.png").stat().st_size > 10_000
    doc: dict[str, Any] = json.loads(out.with_name("tiny.json").read_text())
    return doc


def test_report_has_the_measurements(report: dict[str, Any]) -> None:
    assert report["command"].startswith("helios bench-realtime --model tiny")
    assert report["device"].startswith("cpu")
    assert report["model"] == "tiny"
    assert report["size"] == {"width": 64, "height": 64, "requested": True}
    assert report["emission_fps"] == 24.0
    for key in ("torch", "date", "notes", "load_average"):
        assert report[key]
    for key in ("connect_to_ready_s", "start_to_first_frame_s", "start_to_first_chunk_complete_s"):
        assert _positive(report[key]), key
    # Frames go out as they are decoded: the first one comes by the time its chunk is complete
    # (plus the video path's delay), not after.
    assert report["start_to_first_frame_s"] < report["start_to_first_chunk_complete_s"] + 0.5
    assert report["frame_interval_ms"].keys() >= STAT_KEYS
    assert all(_positive(report["frame_interval_ms"][k]) for k in STAT_KEYS - {"std"})
    # Frames leave at the nominal rate even when the engine is slower than real time.
    assert report["frame_interval_ms"]["p50"] == pytest.approx(1000 / 24, rel=0.5)
    assert report["chunks_measured"] >= 2
    assert report["content_frames"] == 33 * report["chunks_measured"]
    assert report["repeated_frames"] >= 0
    assert report["frames_received"] + report["frames_lost"] == (
        report["content_frames"] + report["repeated_frames"]
    )
    assert report["stalls"]["count"] == len(report["stalls"]["frames"])
    assert _positive(report["chunk_period_s"]["mean"])
    assert report["chunk_playback_s"] == pytest.approx(33 / 24, abs=1e-3)
    assert len(report["command_to_chunk_complete_s"]) == 1
    assert len(report["command_to_first_frame_s"]) == 1
    assert all(_positive(x) for x in report["command_to_chunk_complete_s"])
    # progressive delivery: the changed chunk's first frame by the time it completes, not after
    assert (
        0 < report["command_to_first_frame_s"][0] < report["command_to_chunk_complete_s"][0] + 0.5
    )
    assert report["chunk_assignment"]["shown_tick_starts"] == report["chunks_measured"]
    change = report["prompt_changes"][0]
    assert change["chunk"] >= 1
    assert report["chunks"][change["chunk"]]["prompt"] == change["prompt"]


def test_register_realtime_adds_the_sub_command() -> None:
    parser = argparse.ArgumentParser(prog="helios")
    register_realtime(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench-realtime", "--chunks", "4", "--url", "http://x:1"])
    assert (args.chunks, args.prompt_changes, args.model, args.url) == (4, 3, "tiny", "http://x:1")
    with pytest.raises(SystemExit):
        parser.parse_args(["bench-realtime", "--chunks", "0"])


def _simulate(
    appends: list[float], fps: float, n_ticks: int, video_delay: float, event_delay: float
) -> tuple[list[ReceivedFrame], list[ChunkDone], list[int]]:
    """A paced track: 10-frame chunks appended at `appends`; which tick each chunk starts at."""
    frames, starts, queued, chunk, content = [], [], 0, 0, 0
    pending = sorted(appends)
    prev_value = -1.0
    for tick in range(n_ticks):
        due = tick / fps
        while pending and pending[0] <= due:
            pending.pop(0)
            queued += 10
        if queued:
            if content % 10 == 0:
                starts.append(tick)
            queued -= 1
            content += 1
            chunk = content
        value = float(chunk)  # repeats keep the previous frame's value
        diff = 0.0 if value == prev_value else 20.0
        prev_value = value
        frames.append(ReceivedFrame(due + video_delay, tick, diff))
    chunks = [ChunkDone(i, t + event_delay, 10, "p") for i, t in enumerate(sorted(appends))]
    return frames, chunks, starts


@pytest.mark.parametrize(
    "appends",
    [
        [0.50, 0.90, 1.30],  # slower than real time: stalls of ~6 frames between chunks
        [0.50, 0.51, 0.60],  # faster: chunks queued, no stall
        [0.50, 1.5, 1.52, 4.0],  # a mix
    ],
)
def test_chunk_playback_finds_each_chunks_first_tick(appends: list[float]) -> None:
    fps = 24.0
    frames, chunks, starts = _simulate(appends, fps, 200, video_delay=0.02, event_delay=0.03)
    first = chunk_playback(frames, chunks, fps, first_tick=0)
    bias = calibrate_bias(frames, chunks, first, fps)
    found = chunk_playback(frames, chunks, fps, 0, bias or 0.0)
    assert [p.first_tick for p in found] == starts
    assert [p.stall_frames for p in found][1:] == [
        b - (a + 10) for a, b in itertools.pairwise(starts)
    ]


def test_summary_statistics() -> None:
    s = summary([1.0, 2.0, 3.0, 4.0], scale=1000.0)
    assert s["n"] == 4
    assert s["mean"] == 2500.0
    assert s["max"] == 4000.0
    assert summary([]) == {"n": 0}


def test_report_records_the_client_generation(report: dict[str, Any]) -> None:
    assert report["client"] == {
        "generation": "js-sdk-2.9",
        "flow": "sdp_params",
        "wire": "json",
        "channels": ["data"],
    }
    assert report["command_reply_ms"] is None  # JSON commands are not correlated


def test_reactor_sdk_generation_is_measured_too(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The newer flow end to end: registered connection, trickled candidates, control channel,
    protobuf commands, each answered with a correlated reply the report times."""
    out = tmp_path_factory.mktemp("bench-rt-pb") / "pb"
    argv = ["--model", "tiny", "--data-dir", str(data_dir), "--width", "64", "--height", "64"]
    argv += ["--chunks", "2", "--prompt-changes", "1", "--timeout", "120", "--out", str(out)]
    assert main([*argv, "--client", "reactor-sdk-1.x"]) == 0
    doc = json.loads(out.with_name("pb.json").read_text())
    assert doc["client"]["generation"] == "reactor-sdk-1.x"
    assert doc["client"]["wire"] == "protobuf"
    assert doc["chunks_measured"] >= 2
    replies = doc["command_replies"]
    # set_seed, set_prompt, start and the timed set_prompt: every one answered, in order.
    assert [r["command"] for r in replies] == ["set_seed", "set_prompt", "start", "set_prompt"]
    assert [r["reply"] for r in replies] == [
        "state",
        "prompt_accepted",
        "generation_started",
        "prompt_accepted",
    ]
    assert doc["command_reply_ms"]["n"] == 4
    assert all(_positive(r["ms"]) for r in replies)
