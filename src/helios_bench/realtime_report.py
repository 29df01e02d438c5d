"""The report of `helios bench-realtime`: JSON fields, the printed table and the plot."""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .realtime_analysis import (
    ChunkDone,
    ChunkPlayback,
    ReceivedFrame,
    first_content_by_pixels,
    schedule_offset,
    summary,
)
from .realtime_client import CLIENTS, JS_SDK_2_9, ConnectTimes

NOTES = {
    "clock": "every time is time.perf_counter() in the client process, taken when a message or "
    "decoded frame reaches it; server and client share the host when the bench starts the server",
    "connect_to_ready_s": "POST /start_session sent -> peer connectionState 'connected' and the "
    "'data' channel open (the SDK's status 'ready'); connect_breakdown_s splits it (answer polled "
    "every 20 ms, tighter than the SDK's backoff, so it shows the server's time)",
    "start_to_first_frame_s": "'start' sent -> arrival of chunk 0's first frame (see "
    "chunk_assignment); start_to_first_chunk_complete_s: 'start' sent -> chunk_complete 0 "
    "(includes opening the stream, prompt encoding and the first chunk)",
    "chunk_assignment": "which received frames belong to which chunk: the server stamps every "
    "frame, repeats included, with the next tick of a 90 kHz clock at emission_fps (track.py; the "
    "bench pins the session's playback at the emission rate, extra_args.playback_fps), so "
    "tick = pts*time_base*fps counts server ticks. A chunk whose chunk_shown event carries the pts "
    "of its first frame starts at that tick (shown_tick_starts: exact). Otherwise (servers "
    "before issue 21): chunks enter the buffer whole and "
    "chunk_complete is emitted right after, so the buffer only runs dry between chunks. Chunk K+1 "
    "starts frames(K) ticks after chunk K, or, if its chunk_complete arrived after that tick was "
    "due, at the first tick due after that chunk_complete (tick schedule: "
    "min(arrival - tick/fps) + tick/fps). Exact when the chunk was queued in time. Video "
    "reaches the client later than the data channel, so near a tick this can be one tick late; "
    "after a stall of >= 6 frames the start is refined by pixels (the first of the 3 ticks "
    "around the estimate whose mean luma change exceeds max(0.5, 10x the stall's settled "
    "repeats)), recorded per chunk as pixel_shift_ticks; after shorter stalls it is within about "
    "one tick. Pixels alone cannot count frames: after VP8, the tiny model's late frames in a "
    "chunk differ by ~0.01 grey levels, as little as a repeated frame's codec refinement. "
    "first_frame_check compares chunk 0's first frame found this way with the first frame after "
    "'start' whose mean luma change exceeds 2 grey levels",
    "frame_interval_ms": "inter-arrival time of consecutive received frames from chunk 0's first "
    "frame to the last frame of the last measured chunk (repeats included: they are frames the "
    "viewer gets); std is the jitter; nominal_frame_interval_ms = 1000/emission_fps",
    "frame_lateness_ms": "arrival - due time on the tick schedule (0 = the least late frame)",
    "repeated_frames": "ticks inside that window that carried a repeat of the previous frame "
    "because the next chunk was not ready (stalls: runs of them, one per starved chunk boundary); "
    "startup_placeholder_frames: frames between 'start' and chunk 0 (black placeholder) are not "
    "counted as repeats",
    "chunk_period_s": "intervals between consecutive chunk_complete events (chunks 0..last); the "
    "buffer holds 2 chunks, so a faster-than-real-time engine is throttled to chunk_playback_s = "
    "frames per chunk / emission_fps; realtime_factor = chunk_playback_s / mean chunk_period_s",
    "command_to_chunk_complete_s": "set_prompt sent (at a random time, after chunk 0 completed, "
    "each after the previous one took effect) -> the chunk_complete whose active_prompt is the "
    "new prompt; command_to_first_frame_s: -> the arrival of that chunk's first frame",
    "load_average": "host 1/5/15-minute load average before and after the run",
    "client": "which generation of Reactor client the bench spoke: js-sdk-2.9 (sdp_params, JSON "
    "on 'data') or reactor-sdk-1.x (registered connection, trickled ICE, 'control' channel, "
    "protobuf with a correlated reply per command)",
    "command_reply_ms": "reactor-sdk-1.x only: command sent -> its correlated reply arrived "
    "(the server replies once the command is applied, not when it takes effect at a chunk)",
}


@dataclass(frozen=True)
class PromptChange:
    prompt: str
    sent_t: float
    chunk: int
    chunk_complete_t: float


@dataclass
class RunData:
    connect: ConnectTimes
    session: dict[str, Any]
    server: dict[str, Any] | None
    fps: float
    start_t: float
    frames: list[ReceivedFrame]
    chunks: list[ChunkDone]
    playback: list[ChunkPlayback]
    changes: list[PromptChange]
    first_tick: int
    reordered_frames: int
    server_start_s: float | None
    frame_size: tuple[int, int] | None
    bias_s: float | None
    client: str = JS_SDK_2_9
    replies: list[tuple[str, float, str]] = field(default_factory=list)
    """(command, seconds to its correlated reply, reply type): reactor-sdk-1.x only."""


# ---------------------------------------------------------------------------- argv


def command_line(args: argparse.Namespace) -> str:
    """The command as typed, starting with `helios bench-realtime`."""
    argv = getattr(args, "argv", None)
    if argv is None and "bench-realtime" in sys.argv[1:]:
        argv = sys.argv[sys.argv.index("bench-realtime") + 1 :]
    return shlex.join(["helios", "bench-realtime", *(argv or [])])


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------------------- run


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _device(server: dict[str, Any] | None, remote: bool) -> str:
    from .report import cpu_model

    kind = str((server or {}).get("device", "unknown"))
    where = " (server elsewhere: --url)" if remote else ""
    if kind.startswith("cuda") and not remote:
        try:
            import torch

            index = int(kind.split(":")[1]) if ":" in kind else 0
            return f"{kind}: {torch.cuda.get_device_name(index)}"
        except (RuntimeError, ValueError, AssertionError):
            return kind
    if kind == "cpu":
        return f"cpu: {cpu_model()}, {os.cpu_count()} cores{where}"
    return kind + where


def run_fields(
    args: argparse.Namespace,
    server: dict[str, Any] | None,
    session: dict[str, Any],
    client: str,
    server_start_s: float | None,
    load_before: list[float] | None,
) -> dict[str, Any]:
    """What every report records about the run: command, device, versions, server, client."""
    remote = args.url is not None
    return {
        "tool": "helios bench-realtime",
        "command": command_line(args),
        "device": _device(server, remote),
        "torch": _version("torch"),
        "aiortc": _version("aiortc"),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": (server or {}).get("model", args.model),
        "client": {"generation": client, **CLIENTS[client]},
        "server": {
            "url": args.url,
            "started_by_bench": not remote,
            "start_to_ready_s": _r(server_start_s, 2),
            "ready": server,
            "server_version": (session.get("server_info") or {}).get("server_version"),
        },
        "load_average": {"before": load_before, "after": load_average()},
    }


def build_report(
    data: RunData, args: argparse.Namespace, load_before: list[float] | None
) -> dict[str, Any]:
    """The JSON document (see NOTES for what each number means)."""
    fps, frames, pb = data.fps, data.frames, data.playback
    last = data.chunks[-1]
    window_start, window_end = pb[0].first_tick, pb[-1].first_tick + last.frames
    window = [f for f in frames if window_start <= f.tick < window_end]
    offset = schedule_offset(frames, fps)
    intervals = [b.t - a.t for a, b in itertools.pairwise(window)]
    stalls = [p.stall_frames for p in pb[1:] if p.stall_frames > 0]
    content = sum(c.frames for c in data.chunks)
    periods = [b.t - a.t for a, b in itertools.pairwise(data.chunks)]
    playback_s = 33 / fps
    by_index = {p.index: p for p in pb}
    changes = [
        {
            "prompt": c.prompt,
            "sent_s": _r(c.sent_t - data.start_t),
            "chunk": c.chunk,
            "command_to_chunk_complete_s": _r(c.chunk_complete_t - c.sent_t),
            "command_to_first_frame_s": _r(by_index[c.chunk].first_frame_t - c.sent_t),
        }
        for c in data.changes
    ]
    by_pixels = first_content_by_pixels(frames, data.first_tick)
    session = data.session
    # The session JSON does not carry the frame size; the decoded frames do.
    width, height = data.frame_size or (args.width, args.height)
    remote = args.url is not None
    return {
        "tool": "helios bench-realtime",
        "command": command_line(args),
        "device": _device(data.server, remote),
        "torch": _version("torch"),
        "aiortc": _version("aiortc"),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": (data.server or {}).get("model", args.model),
        "client": {"generation": data.client, **CLIENTS[data.client]},
        "command_reply_ms": summary([r[1] for r in data.replies], 1000.0, 3)
        if data.replies
        else None,
        "command_replies": [
            {"command": c, "reply": kind, "ms": _r(dt * 1000, 3)} for c, dt, kind in data.replies
        ],
        "server": {
            "url": args.url,
            "started_by_bench": not remote,
            "start_to_ready_s": _r(data.server_start_s, 2),
            "ready": data.server,
            "server_version": (session.get("server_info") or {}).get("server_version"),
        },
        "size": {"width": width, "height": height, "requested": args.width is not None},
        "emission_fps": fps,
        "emission_fps_requested": args.emission_fps,
        "load_average": {"before": load_before, "after": load_average()},
        "settings": {
            "chunks": args.chunks,
            "prompt_changes": args.prompt_changes,
            "seed": args.seed,
            "timeout": args.timeout,
        },
        "connect_to_ready_s": _r(data.connect.ready),
        "connect_breakdown_s": {
            k: (_r(v) if isinstance(v, float) else v) for k, v in asdict(data.connect).items()
        },
        "start_to_first_chunk_complete_s": _r(data.chunks[0].t - data.start_t),
        "start_to_first_frame_s": _r(pb[0].first_frame_t - data.start_t),
        "first_frame_check": {
            "by_ticks_s": _r(pb[0].first_frame_t - data.start_t),
            "by_pixels_s": _r(by_pixels.t - data.start_t) if by_pixels else None,
            "tick_difference": (by_pixels.tick - pb[0].first_tick) if by_pixels else None,
        },
        "chunk_assignment": {
            "event_bias_ms": _r(data.bias_s * 1000, 2) if data.bias_s is not None else None,
            "shown_tick_starts": sum(c.shown_tick is not None for c in data.chunks),
            "pixel_verified_starts": sum(p.pixel_shift is not None for p in pb),
            "timing_only_starts": sum(p.pixel_shift is None for p in pb),
        },
        "chunks_measured": len(data.chunks),
        "frames_per_chunk": last.frames,
        "nominal_frame_interval_ms": _r(1000 / fps),
        "frame_interval_ms": summary(intervals, 1000.0, 3),
        "frame_lateness_ms": summary([f.t - (offset + f.tick / fps) for f in window], 1000.0, 3),
        "frames_received": len(window),
        "frames_lost": (window_end - window_start) - len(window),
        "frames_reordered": data.reordered_frames,
        "content_frames": content,
        "repeated_frames": (window_end - window_start) - content,
        "startup_placeholder_frames": pb[0].stall_frames,
        "stalls": {
            "count": len(stalls),
            "frames": stalls,
            "total_s": _r(sum(stalls) / fps, 3),
            "max_s": _r(max(stalls, default=0) / fps, 3),
        },
        "chunk_period_s": summary(periods, 1.0, 4),
        "chunk_playback_s": _r(playback_s),
        "realtime_factor": _r(playback_s / (sum(periods) / len(periods)), 3) if periods else None,
        "command_to_chunk_complete_s": [c["command_to_chunk_complete_s"] for c in changes],
        "command_to_first_frame_s": [c["command_to_first_frame_s"] for c in changes],
        "prompt_changes": changes,
        "chunks": [
            {
                "index": c.index,
                "prompt": c.prompt,
                "chunk_complete_s": _r(c.t - data.start_t),
                "first_frame_s": _r(by_index[c.index].first_frame_t - data.start_t),
                "first_tick": by_index[c.index].first_tick,
                "stall_frames_before": by_index[c.index].stall_frames,
                "pixel_shift_ticks": by_index[c.index].pixel_shift,
            }
            for c in data.chunks
        ],
        "timeline": _timeline(data, window_end),
        "notes": NOTES,
    }


def _timeline(data: RunData, window_end: int) -> dict[str, list[Any]]:
    """Per received frame, up to the end of the window: time since start, tick and its kind."""
    starts = [
        (p.first_tick, p.first_tick + c.frames)
        for p, c in zip(data.playback, data.chunks, strict=True)
    ]
    kinds, ts, ticks, diffs = [], [], [], []
    for f in data.frames:
        if f.tick >= window_end:
            break
        if f.tick < starts[0][0]:
            kind = "placeholder"
        elif any(a <= f.tick < b for a, b in starts):
            kind = "content"
        else:
            kind = "repeat"
        ts.append(round(f.t - data.start_t, 4))
        ticks.append(f.tick)
        kinds.append(kind)
        diffs.append(round(f.luma_diff, 3))
    return {"t_s": ts, "tick": ticks, "kind": kinds, "luma_diff": diffs}


# ---------------------------------------------------------------------------- table


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _stat_line(label: str, s: dict[str, float], spec: str) -> str:
    if not s.get("n"):
        return f"  {label:36s} -"
    keys = ("mean", "std", "p50", "p95", "p99", "max")
    return f"  {label:36s} " + "  ".join(f"{k} {format(s[k], spec)}" for k in keys)


def format_table(report: dict[str, Any]) -> str:
    stalls = report["stalls"]
    size = report["size"]
    lines = [
        f"helios bench-realtime  {report['device']}",
        f"model {report['model']}  size {size['width']}x{size['height']}  emission_fps "
        f"{report['emission_fps']:g}  chunks {report['chunks_measured']}  load average before: "
        f"{report['load_average']['before']}",
        f"client {report['client']['generation']} ({report['client']['flow']}, "
        f"{report['client']['wire']})",
        "",
        f"  {'connect -> ready (s)':36s} {_fmt(report['connect_to_ready_s'])}",
        f"  {'start -> first chunk_complete (s)':36s} "
        f"{_fmt(report['start_to_first_chunk_complete_s'])}",
        f"  {'start -> first frame (s)':36s} {_fmt(report['start_to_first_frame_s'])}",
        f"  {'nominal frame interval (ms)':36s} {_fmt(report['nominal_frame_interval_ms'], '.2f')}",
        _stat_line("frame interval (ms)", report["frame_interval_ms"], ".1f"),
        _stat_line("frame lateness (ms)", report["frame_lateness_ms"], ".1f"),
        f"  {'frames received / lost':36s} {report['frames_received']} / {report['frames_lost']}",
        f"  {'content / repeated frames':36s} {report['content_frames']} / "
        f"{report['repeated_frames']}",
        f"  {'stalls (count, total s, max s)':36s} {stalls['count']}, "
        f"{_fmt(stalls['total_s'])}, {_fmt(stalls['max_s'])}",
        _stat_line("chunk period (s)", report["chunk_period_s"], ".3f"),
        f"  {'chunk playback (s)':36s} {_fmt(report['chunk_playback_s'])}",
        f"  {'real-time factor (playback/period)':36s} {_fmt(report['realtime_factor'], '.3f')}",
    ]
    if report["command_reply_ms"] is not None:
        lines.append(_stat_line("command -> reply (ms)", report["command_reply_ms"], ".1f"))
    for i, c in enumerate(report["prompt_changes"], 1):
        label = f"set_prompt {i} -> chunk {c['chunk']}"
        lines.append(
            f"  {label:36s} chunk_complete "
            f"{_fmt(c['command_to_chunk_complete_s'])} s, first frame "
            f"{_fmt(c['command_to_first_frame_s'])} s"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plot


def plot(report: dict[str, Any], path: Path) -> None:
    """Frame inter-arrival times over time, chunk_complete markers and prompt changes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    tl = report["timeline"]
    ts, kinds = tl["t_s"], tl["kind"]
    colors = {"placeholder": "0.6", "content": "C0", "repeat": "C3"}
    for kind, color in colors.items():
        xs = [ts[i] for i in range(1, len(ts)) if kinds[i] == kind]
        ys = [(ts[i] - ts[i - 1]) * 1000 for i in range(1, len(ts)) if kinds[i] == kind]
        if xs:
            ax.plot(xs, ys, ".", ms=3, color=color, label=f"{kind} frames ({len(xs)})")
    ax.axhline(report["nominal_frame_interval_ms"], color="k", lw=0.8, ls="--",
               label=f"nominal {report['nominal_frame_interval_ms']:.1f} ms")  # fmt: skip
    for i, c in enumerate(report["chunks"]):
        ax.axvline(c["chunk_complete_s"], color="C2", lw=0.8, alpha=0.7,
                   label="chunk_complete" if i == 0 else None)  # fmt: skip
        ax.annotate(
            str(c["index"]),
            (c["chunk_complete_s"], 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color="C2",
            ha="left",
            va="top",
        )
    for i, c in enumerate(report["prompt_changes"]):
        ax.axvline(c["sent_s"], color="C1", lw=1.0, ls=":",
                   label="set_prompt sent" if i == 0 else None)  # fmt: skip
        first = c["sent_s"] + c["command_to_first_frame_s"]
        ax.axvline(first, color="C4", lw=1.0, ls="-.",
                   label="its first frame" if i == 0 else None)  # fmt: skip
    ax.axvline(0.0, color="k", lw=1.0, label="start sent")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since 'start' was sent (client clock)")
    ax.set_ylabel("inter-arrival time of received frames (ms)")
    ax.set_title(
        f"helios bench-realtime: {report['model']}, emission {report['emission_fps']:g} fps, "
        f"{report['device']}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    ax.grid(alpha=0.3, which="both")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------- main
