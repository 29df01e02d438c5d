"""Steering measured from pixels: `helios bench-realtime --engine paced:SECONDS`.

With the paced test engine every frame says which chunk, frame and prompt it is
(`core/framecode.py`), so the client needs no timing heuristics. The run:

1. `set_seed`, `set_prompt`, `start`; the first frame carrying a code is the first frame.
2. A steady phase of `--steady-chunks` chunks with no command: stalls and frame pacing there
   say whether generation keeps up on its own.
3. `--commands` `set_prompt`s, each sent at a random moment (a uniform delay of up to one
   chunk's playback after the previous change showed, so it lands at a random phase of a
   chunk) with a prompt whose tag differs from the one on screen; its latency is from sending
   it to the arrival of the first frame painted with the new prompt.
4. `pause`, then wait until playback has drained: every chunk made has had its chance to show,
   so chunks reported complete but never seen were thrown away (wasted generation).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helios_serve.core.framecode import FrameCode, prompt_tag
from helios_serve.core.types import FRAMES_PER_CHUNK

from .realtime_analysis import ReceivedFrame, summary
from .realtime_client import ConnectTimes, Event, RealtimeClient
from .realtime_playback import FROZEN_S, Stall, playback, playback_text, stall_summary, stalls

PROMPT = (
    "A lighthouse on a rocky coast at dusk, warm light in its lantern, waves breaking on the "
    "rocks below, gulls circling, wide establishing shot from the sea."
)
ACTIONS = (
    "a storm rolls in and lightning strikes the sea behind it",
    "the lantern sweeps its beam across a calm, starry night",
    "fog drifts in and swallows the base of the tower",
    "a fishing boat passes close by, its deck lights on",
)
DRAIN_QUIET_S = 1.0
"""After `pause`, playback has drained once no new frame came for one chunk plus this."""


@dataclass(frozen=True)
class SentCommand:
    prompt: str
    sent_t: float


@dataclass
class SteeringRun:
    """Everything the client saw; times are seconds on the client's clock."""

    fps: float
    start_t: float
    frames: list[ReceivedFrame]
    events: list[Event]
    steady: tuple[float, float]
    commands: list[SentCommand]
    paused_t: float
    connect: ConnectTimes | None = None
    session: dict[str, Any] = field(default_factory=dict)
    frame_size: tuple[int, int] | None = None


def _log(message: str) -> None:
    import sys

    print(f"helios bench-realtime: {message}", file=sys.stderr, flush=True)


def _coded(frames: Sequence[ReceivedFrame], after: float) -> list[ReceivedFrame]:
    return [f for f in frames if f.code is not None and f.t >= after]


def _next_prompt(i: int, current: str) -> str:
    """The i-th changed prompt, chosen so its tag differs from the one on screen."""
    for salt in itertools.count():
        extra = f" ({salt})" if salt else ""
        prompt = f"{PROMPT} Then {ACTIONS[i % len(ACTIONS)]} (change {i + 1}{extra})."
        if prompt_tag(prompt) != prompt_tag(current):
            return prompt
    raise AssertionError("unreachable")


async def measure_steering(
    client: RealtimeClient, args: argparse.Namespace, connect: ConnectTimes
) -> SteeringRun:
    fps, frames = client.fps, client.log.frames
    playback_s = FRAMES_PER_CHUNK / fps
    client.send("set_seed", {"seed": args.seed})
    client.send("set_prompt", {"prompt": PROMPT})
    start_t = client.send("start")
    first = await client.until(lambda: next(iter(_coded(frames, start_t)), None), "a first frame")
    _log(f"first frame {first.t - start_t:.3f} s after start (chunk {first.code.chunk})")

    begin = first.code.chunk + 1  # chunk 0 is startup, not steady state
    end = begin + args.steady_chunks

    def chunk_started(index: int) -> ReceivedFrame | None:
        return next((f for f in _coded(frames, start_t) if f.code.chunk >= index), None)  # type: ignore[union-attr]

    steady_from = await client.until(lambda: chunk_started(begin), f"chunk {begin}")
    steady_to = await client.until(lambda: chunk_started(end), f"chunk {end}")
    _log(f"steady phase: chunks {begin}..{end - 1} played")

    rng = random.Random(args.seed)
    commands: list[SentCommand] = []
    on_screen = PROMPT
    for i in range(args.commands):
        await asyncio.sleep(rng.uniform(0.0, playback_s))
        prompt = _next_prompt(i, on_screen)
        sent = client.send("set_prompt", {"prompt": prompt})
        shown = await client.until(
            _first_with_tag(frames, sent, prompt_tag(prompt)), f"command {i + 1} on screen"
        )
        commands.append(SentCommand(prompt, sent))
        on_screen = prompt
        _log(f"command {i + 1}: on screen after {shown.t - sent:.3f} s (chunk {shown.code.chunk})")

    paused_t = client.send("pause")

    def drained() -> bool:
        last_new = _last_new_frame(frames)
        return last_new is not None and client.now() - last_new > playback_s + DRAIN_QUIET_S

    await client.until(drained, "playback to drain after pause")
    return SteeringRun(
        fps=fps,
        start_t=start_t,
        frames=list(frames),
        events=list(client.log.events),
        steady=(steady_from.t, steady_to.t),
        commands=commands,
        paused_t=paused_t,
        connect=connect,
        session=client.session,
        frame_size=client.log.frame_size,
    )


def _first_with_tag(
    frames: Sequence[ReceivedFrame], after: float, tag: int
) -> Callable[[], ReceivedFrame | None]:
    def check() -> ReceivedFrame | None:
        return next((f for f in _coded(frames, after) if f.code and f.code.tag == tag), None)

    return check


def _last_new_frame(frames: Sequence[ReceivedFrame]) -> float | None:
    """Arrival of the last frame whose code differs from the one before it."""
    for a, b in zip(reversed(frames[:-1]), reversed(frames), strict=False):
        if b.code is not None and b.code != a.code:
            return b.t
    return None


# ---------------------------------------------------------------------------- analysis


def analyse(run: SteeringRun) -> dict[str, Any]:
    """The steering part of the report (see `STEERING_NOTES`)."""
    fps, frames = run.fps, run.frames
    coded = _coded(frames, run.start_t)
    # repeats after 'pause' are the end of the run, not stalls
    found = stalls([f for f in frames if run.start_t <= f.t < run.paused_t])
    a, b = run.steady
    steady_frames = [f for f in frames if a <= f.t < b]
    intervals = [y.t - x.t for x, y in itertools.pairwise(steady_frames)]
    latencies, changes = _changes(run, coded, found)
    command_from = run.commands[0].sent_t if run.commands else b
    command_to = max((run.start_t + c["sent_s"] + c["first_changed_frame_s"] for c in changes),
                     default=b)  # fmt: skip
    made = _made(run.events)
    shown_pairs = {(f.code.chunk, f.code.tag) for f in coded}  # type: ignore[union-attr]
    wasted = sorted(made - shown_pairs)
    final_state = next((e.data for e in reversed(run.events) if e.type == "state"), {})
    steady_chunks = {f.code.chunk for f in steady_frames if f.code is not None}
    command_frames = [f for f in frames if command_from <= f.t <= command_to]
    return {
        "start_to_first_frame_s": round(coded[0].t - run.start_t, 4) if coded else None,
        "steady": {
            "chunks": len(steady_chunks),
            "seconds": round(b - a, 3),
            "stalls": stall_summary([s for s in found if a <= s.t < b], fps),
            "frame_interval_ms": summary(intervals, 1000.0, 3),
            "playback": playback(steady_frames, fps),
        },
        "commands": {
            "count": len(run.commands),
            "landed_on_the_next_chunk": sum(
                c["chunk"] == (c["chunk_on_screen_at_send"] or 0) + 1 for c in changes
            ),
            "first_changed_frame_s": summary(latencies, 1.0, 4),
            "stalls": stall_summary([s for s in found if command_from <= s.t <= command_to], fps),
            "playback": playback(command_frames, fps),
            "each": changes,
        },
        "server_playback": final_state.get("playback"),
        "stalls_whole_run": stall_summary(found, fps),
        "wasted_generation": {
            "chunks_made": len(made),
            "chunks_made_never_shown": len(wasted),
            "share_of_chunks": round(len(wasted) / len(made), 4) if made else None,
            "never_shown": [{"chunk": c, "tag": t} for c, t in wasted],
            "server_reported": final_state.get("generation"),
        },
        "chunk_shown_vs_pixels_ms": _shown_offsets(run.events, coded),
    }


def _changes(
    run: SteeringRun, coded: Sequence[ReceivedFrame], found: Sequence[Stall]
) -> tuple[list[float], list[dict[str, Any]]]:
    """Each command's latency to its first changed frame, and what the report says of it."""
    fps = run.fps
    latencies: list[float] = []
    changes: list[dict[str, Any]] = []
    for i, command in enumerate(run.commands):
        tag = prompt_tag(command.prompt)
        shown = next(f for f in coded if f.t >= command.sent_t and f.code.tag == tag)  # type: ignore[union-attr]
        before = [s for s in found if command.sent_t <= s.t <= shown.t]
        playing = next((f for f in reversed(coded) if f.t <= command.sent_t), None)
        latencies.append(shown.t - command.sent_t)
        changes.append(
            {
                "sent_s": round(command.sent_t - run.start_t, 4),
                "first_changed_frame_s": round(shown.t - command.sent_t, 4),
                "chunk": shown.code.chunk,  # type: ignore[union-attr]
                "chunk_on_screen_at_send": playing.code.chunk if playing and playing.code else None,
                "frame_in_chunk": shown.code.frame,  # type: ignore[union-attr]
                "stall_before_s": round(sum(s.ticks for s in before) / fps, 3),
                "index": i + 1,
            }
        )
    return latencies, changes


def _made(events: Sequence[Event]) -> set[tuple[int, int]]:
    """(chunk index mod 4096, prompt tag) of every chunk_complete."""
    return {
        (int(e.data["chunk_index"]) % 4096, prompt_tag(str(e.data.get("active_prompt"))))
        for e in events
        if e.type == "chunk_complete"
    }


def _shown_offsets(events: Sequence[Event], coded: Sequence[ReceivedFrame]) -> dict[str, float]:
    """First arrival of a chunk's frames minus the arrival of its `chunk_shown` event."""
    first: dict[tuple[int, int], float] = {}
    for f in coded:
        key = (f.code.chunk, f.code.tag)  # type: ignore[union-attr]
        first.setdefault(key, f.t)
    offsets = []
    for e in events:
        if e.type != "chunk_shown":
            continue
        key = (int(e.data["chunk_index"]) % 4096, prompt_tag(str(e.data.get("active_prompt"))))
        if key in first:
            offsets.append(first[key] - e.t)
    return summary(offsets, 1000.0, 2)


STEERING_NOTES = {
    "frame_codes": "the paced test engine paints chunk index, frame index and a 10-bit prompt "
    "tag into every frame (core/framecode.py); the client reads it from each decoded frame",
    "start_to_first_frame_s": "'start' sent -> arrival of the first frame carrying a code",
    "steady": "from the first frame of chunk first+1 to the first frame of chunk "
    "first+1+steady_chunks, no command sent; frame_interval_ms: inter-arrival of received frames "
    "(std is the jitter)",
    "stalls": "runs of repeated frames (a received frame whose code equals the previous one: the "
    "server had no new frame at that tick); total_s = repeated ticks / emission_fps",
    "commands.landed_on_the_next_chunk": "commands whose first changed frame is frame 0 of the "
    "chunk right after the one on screen when the command was sent",
    "commands.first_changed_frame_s": "set_prompt sent (a uniform random delay of up to one chunk "
    "playback after the previous change showed) -> arrival of the first frame painted with the "
    "new prompt's tag; commands.stalls: stalls from the first command to the last change shown",
    "wasted_generation": "after 'pause' and a drained playback: chunk_complete events whose (chunk "
    "index, prompt tag) never appeared on screen, over all chunk_complete events; a chunk "
    "abandoned mid-generation sends no chunk_complete, so server_reported (the session's "
    "counters in its last 'state', when the server keeps them) has the engine time too",
    "playback": "by presentation time (the frames' pts: when a player with a jitter buffer "
    "shows them): effective_fps: new frames (a code unlike the frame before) per second over "
    "the phase; frozen_s / frozen_share: for each new frame more than "
    f"{FROZEN_S:g} s after the one before (a picture moving at under {1 / FROZEN_S:g} fps), the "
    "time past one nominal frame interval, summed, and over the phase's span; freezes: how "
    "many; arrival: the same by arrival time at the client (transport and the client's own "
    "load included); server_playback: the session's last 'state'.playback (the rate it played "
    "at, when the server reports one)",
    "chunk_shown_vs_pixels_ms": "first arrival of a chunk's frames minus the arrival of the "
    "server's chunk_shown event for it (when the server sends one): how well the event marks "
    "the moment the chunk reaches the screen",
}


def format_steering(report: dict[str, Any]) -> str:
    s = report["steering"]
    steady, commands, wasted = s["steady"], s["commands"], s["wasted_generation"]
    lat = commands["first_changed_frame_s"]

    def stall_text(d: dict[str, Any]) -> str:
        return f"{d['count']}, {d['total_s']:.3f} s, max {d['max_s']:.3f} s"

    lines = [
        f"  {'start -> first frame (s)':36s} {s['start_to_first_frame_s']}",
        f"  {'steady: chunks, stalls':36s} {steady['chunks']}, {stall_text(steady['stalls'])}",
    ]
    fi = steady["frame_interval_ms"]
    if fi.get("n"):
        lines.append(
            f"  {'steady: frame interval (ms)':36s} mean {fi['mean']:.1f}  std {fi['std']:.1f}  "
            f"p95 {fi['p95']:.1f}  max {fi['max']:.1f}"
        )
    lines.append(f"  {'steady: playback':36s} {playback_text(steady.get('playback'))}")
    if lat.get("n"):
        lines.append(
            f"  {'command -> first changed frame (s)':36s} n {lat['n']}  p50 {lat['p50']:.3f}  "
            f"p95 {lat['p95']:.3f}  max {lat['max']:.3f}"
        )
    lines += [
        f"  {'commands: landed on the next chunk':36s} {commands['landed_on_the_next_chunk']} of "
        f"{commands['count']}",
        f"  {'commands: stalls':36s} {stall_text(commands['stalls'])}",
        f"  {'commands: playback':36s} {playback_text(commands.get('playback'))}",
        f"  {'chunks made / never shown':36s} {wasted['chunks_made']} / "
        f"{wasted['chunks_made_never_shown']}",
    ]
    if wasted["server_reported"]:
        lines.append(f"  {'server: generation':36s} {wasted['server_reported']}")
    return "\n".join(lines)


def plot_steering(report: dict[str, Any], path: Path) -> None:
    """Stream position of each received frame over time, repeats, commands and changes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    tl = report["timeline"]
    ts, pos, rep = tl["t_s"], tl["position"], tl["repeat"]
    ax.plot([t for t, r in zip(ts, rep, strict=True) if not r],
            [p for p, r in zip(pos, rep, strict=True) if not r], ".", ms=2, color="C0",
            label="new frame")  # fmt: skip
    ax.plot([t for t, r in zip(ts, rep, strict=True) if r],
            [p for p, r in zip(pos, rep, strict=True) if r], "x", ms=3, color="C3",
            label="repeated frame (stall)")  # fmt: skip
    for i, c in enumerate(report["steering"]["commands"]["each"]):
        ax.axvline(c["sent_s"], color="C1", lw=0.8, ls=":",
                   label="set_prompt sent" if i == 0 else None)  # fmt: skip
        ax.axvline(c["sent_s"] + c["first_changed_frame_s"], color="C4", lw=0.8,
                   label="first changed frame" if i == 0 else None)  # fmt: skip
    ax.set_xlabel("seconds since 'start' was sent (client clock)")
    ax.set_ylabel("stream position shown (chunk + frame/33)")
    ax.set_title(
        f"helios bench-realtime: {report['model']}, emission {report['emission_fps']:g} fps, "
        f"latency {report.get('latency') or 'server default'}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def timeline(run: SteeringRun) -> dict[str, list[Any]]:
    """Per coded frame after start: time, stream position and whether it repeated the last."""
    ts, pos, rep = [], [], []
    prev: FrameCode | None = None
    for f in run.frames:
        if f.t < run.start_t or f.code is None:
            continue
        ts.append(round(f.t - run.start_t, 4))
        pos.append(round(f.code.chunk + f.code.frame / FRAMES_PER_CHUNK, 4))
        rep.append(f.code == prev)
        prev = f.code
    return {"t_s": ts, "position": pos, "repeat": rep}
