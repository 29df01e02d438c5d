"""`helios bench-realtime`: a real-time session measured the way a browser would live it.

Starts `helios serve` on a free loopback port (or uses ``--url``), connects a Python aiortc client
that follows one generation of Reactor's clients in local mode (``--client js-sdk-2.9``: the JS
SDK 2.9.0's flow and JSON; ``--client reactor-sdk-1.x``: reactor-sdk 1.x's registered connection,
trickled ICE, control channel and protobuf wire, each command awaiting its reply), sends
``set_prompt`` + ``start`` and measures: time to ready and to the first frame, frame pacing
against 1/emission_fps (with repeated frames and stalls when the engine is slower than real
time), chunk production against chunk playback time, and command-to-effect latency of mid-stream
``set_prompt`` (and, for reactor-sdk-1.x, command-to-reply latency). Prints a table; ``--out
PREFIX`` writes ``PREFIX.json`` and ``PREFIX.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .realtime_analysis import (
    VIDEO_CLOCK_RATE,
    ChunkDone,
    ChunkPlayback,
    ReceivedFrame,
    calibrate_bias,
    chunk_playback,
    tick_of,
)
from .realtime_client import (
    CLIENTS,
    JS_SDK_2_9,
    RealtimeBenchError,
    RealtimeClient,
    ServerProcess,
    free_port,
    server_argv,
)
from .realtime_report import (
    PromptChange,
    RunData,
    build_report,
    format_table,
    load_average,
    plot,
    run_fields,
)
from .realtime_steering import (
    STEERING_NOTES,
    SteeringRun,
    analyse,
    format_steering,
    measure_steering,
    plot_steering,
    timeline,
)

__all__ = ["add_realtime_arguments", "main", "register_realtime", "run_realtime"]

PIN_EMISSION_RATE = 240.0
"""`extra_args.playback_fps` that pins a session at the server's emission rate (it caps it)."""
PROMPT = (
    "A lighthouse on a rocky coast at dusk, warm light in its lantern, waves breaking on the "
    "rocks below, gulls circling, wide establishing shot from the sea."
)
CHANGE_ACTIONS = (
    "a storm rolls in and lightning strikes the sea behind it",
    "the lantern sweeps its beam across a calm, starry night",
    "fog drifts in and swallows the base of the tower",
    "a fishing boat passes close by, its deck lights on",
)


def add_realtime_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--model", default="tiny", help="checkpoint for the started server (default: tiny)")
    a("--url", default=None, help="use this running server instead of starting one")
    a(
        "--client",
        choices=sorted(CLIENTS),
        default=JS_SDK_2_9,
        help="which generation of Reactor client to speak (default js-sdk-2.9); the report "
        "records it",
    )
    a("--data-dir", type=Path, default=None, help="the started server's --data-dir")
    a("--device", default=None, help="the started server's --device (default: its choice)")
    a(
        "--emission-fps",
        type=float,
        default=None,
        help="the started server's --emission-fps (default: its own); the advertised "
        "capabilities.emission_fps is what is measured against",
    )
    a("--width", type=int, default=None, help="frame width via start_session extra_args")
    a("--height", type=int, default=None, help="frame height via start_session extra_args")
    a("--chunks", type=_positive, default=6, help="chunks to measure (default 6)")
    a(
        "--prompt-changes",
        type=_non_negative,
        default=3,
        help="mid-stream set_prompt commands to time (default 3)",
    )
    a("--seed", type=int, default=0, help="set_seed value and the seed of the command timing")
    a(
        "--engine",
        default=None,
        metavar="paced:SECONDS",
        help="start the server with this TEST engine (every chunk takes SECONDS, frames carry "
        "codes) and measure steering from pixels: --steady-chunks, --commands; with --url, "
        "the engine that server runs (recorded in the report)",
    )
    a(
        "--frame-codes",
        action="store_true",
        help="with --url: the server's frames carry codes (it runs --engine paced:...)",
    )
    a(
        "--steady-chunks",
        type=_positive,
        default=10,
        help="steering: chunks played with no command (default 10)",
    )
    a(
        "--commands",
        type=_non_negative,
        default=20,
        help="steering: set_prompt commands at random moments (default 20)",
    )
    a(
        "--latency",
        choices=["low", "balanced", "smooth"],
        default=None,
        help="steering: the session's extra_args.latency (default: the server's default)",
    )
    a(
        "--playback-fps",
        type=float,
        default=None,
        help="pin the session's playback rate (extra_args.playback_fps; default: it follows "
        "the engine)",
    )
    a(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds allowed for the server to start, and for each wait of the run (default 600)",
    )
    a("--out", default=None, metavar="PREFIX", help="write PREFIX.json and PREFIX.png")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def register_realtime(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `bench-realtime` sub-command; its handler is `run_realtime`."""
    parser = subparsers.add_parser(
        "bench-realtime",
        help="measure a real-time WebRTC session: latency, frame pacing, command-to-effect",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_realtime_arguments(parser)
    parser.set_defaults(handler=run_realtime)


def _log(message: str) -> None:
    print(f"helios bench-realtime: {message}", file=sys.stderr, flush=True)


def _steering(args: argparse.Namespace) -> bool:
    return args.engine is not None or bool(args.frame_codes)


def run_realtime(args: argparse.Namespace) -> int:
    """Run the benchmark: 0 on success, 2 (one line on stderr) when it cannot be measured."""
    if (args.width is None) != (args.height is None):
        print("helios bench-realtime: error: give both --width and --height", file=sys.stderr)
        return 2
    load_before = load_average()
    try:
        data = asyncio.run(_run(args))
    except RealtimeBenchError as exc:
        print(f"helios bench-realtime: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(data, SteeredData):
        report = build_steering_report(data, args, load_before)
        table, draw = format_steering_table(report), plot_steering
    else:
        report = build_report(data, args, load_before)
        table, draw = format_table(report), plot
    print(table, flush=True)
    if args.out:
        from .report import write_outputs

        write_outputs(report, draw, args.out, _log)
    return 0


async def _run(args: argparse.Namespace) -> RunData | SteeredData:
    if args.url is not None:
        return await _measure(args.url.rstrip("/"), args, None)
    # The server's log stays in the temp dir and is kept only when the run fails.
    log = Path(tempfile.gettempdir()) / f"helios-bench-realtime-server-{os.getpid()}.log"
    port = free_port()
    argv = server_argv(args.model, args.data_dir, port, args.emission_fps, args.device, args.engine)
    server = ServerProcess(argv, log)
    _log(f"starting {shlex.join(argv[1:])} (log: {log})")
    t0 = time.perf_counter()
    try:
        url = await server.start(args.timeout)
        started = time.perf_counter() - t0
        _log(f"server ready at {url} after {started:.1f} s")
        data = await _measure(url, args, started)
    finally:
        await server.stop()
    log.unlink(missing_ok=True)
    return data


async def _measure(
    url: str, args: argparse.Namespace, server_start_s: float | None
) -> RunData | SteeredData:
    steering = _steering(args)
    client = RealtimeClient(url, time.perf_counter(), args.timeout, args.client, steering)
    size = {"width": args.width, "height": args.height} if args.width is not None else None
    # Without frame codes, frames are told apart by their ticks: played at a fixed rate (a pin
    # above the emission rate plays at the emission rate) unless asked otherwise.
    fps = args.playback_fps if args.playback_fps is not None or steering else PIN_EMISSION_RATE
    pin = {"playback_fps": fps} if fps is not None else {}
    size = (dict(size or {}) | pin) or None
    if steering:
        extra = dict(size or {}) | ({"latency": args.latency} if args.latency else {})
        try:
            connect = await client.connect(extra or None)
            server = await client.get_json("/ready")
            run = await measure_steering(client, args, connect)
            return SteeredData(run, server, server_start_s, client.generation)
        finally:
            await client.close()
    try:
        connect = await client.connect(size)
        fps = client.fps
        _log(f"ready after {connect.ready:.3f} s; emission_fps {fps:g}")
        server = await client.get_json("/ready")
        client.send("set_seed", {"seed": args.seed})
        client.send("set_prompt", {"prompt": PROMPT})
        start_t = client.send("start")
        await client.until(_chunk_done(client, 0), "chunk 0")
        _log("chunk 0 complete; timing prompt changes")
        changes = await _prompt_changes(client, args, fps)
        last = max([args.chunks - 1, *(c.chunk for c in changes)])
        await client.until(_chunk_done(client, last), f"chunk {last}")
        first_tick = _first_tick_after(client.log.frames, start_t)
        chunks, playback, bias_s = await client.until(
            lambda: _fully_played(client.log.frames, _chunks(client, last), fps, first_tick),
            f"the frames of chunk {last}",
        )
        connect.first_video_frame = client.log.frames[0].t if client.log.frames else None
        return RunData(
            connect=connect,
            session=client.session,
            server=server,
            fps=fps,
            start_t=start_t,
            frames=list(client.log.frames),
            chunks=chunks,
            playback=playback,
            changes=changes,
            first_tick=first_tick,
            reordered_frames=client.log.lost_order,
            server_start_s=server_start_s,
            frame_size=client.log.frame_size,
            bias_s=bias_s,
            client=client.generation,
            replies=list(client.replies),
        )
    finally:
        await client.close()


def _chunk_done(client: RealtimeClient, index: int) -> Any:
    def check() -> Any:
        return client.find("chunk_complete", lambda d: int(d.get("chunk_index", -1)) >= index)

    return check


async def _prompt_changes(
    client: RealtimeClient, args: argparse.Namespace, fps: float
) -> list[PromptChange]:
    """Sequential set_prompt commands at random moments; each waits for the previous to apply."""
    rng = random.Random(args.seed)
    out = []
    for i in range(args.prompt_changes):
        # A random phase within one chunk's playback, so the command lands anywhere in a chunk.
        await asyncio.sleep(rng.uniform(0.0, 33 / fps))
        prompt = f"{PROMPT} Then {CHANGE_ACTIONS[i % len(CHANGE_ACTIONS)]} (change {i + 1})."
        sent = client.send("set_prompt", {"prompt": prompt})

        def applied(p: str = prompt) -> Any:
            return client.find("chunk_complete", lambda d: d.get("active_prompt") == p)

        event = await client.until(applied, f"prompt change {i + 1} to take effect")
        out.append(PromptChange(prompt, sent, int(event.data["chunk_index"]), event.t))
        _log(f"prompt change {i + 1}: chunk {out[-1].chunk}, {event.t - sent:.3f} s")
    return out


def _first_tick_after(frames: Sequence[ReceivedFrame], t: float) -> int:
    for f in frames:
        if f.t >= t:
            return f.tick
    return frames[-1].tick + 1 if frames else 0


def _chunks(client: RealtimeClient, last: int) -> list[ChunkDone]:
    by_index = {
        int(e.data["chunk_index"]): e for e in client.log.events if e.type == "chunk_complete"
    }
    missing = [i for i in range(last + 1) if i not in by_index]
    if missing:
        raise RealtimeBenchError(f"no chunk_complete for chunks {missing}")
    shown = {
        int(e.data["chunk_index"]): e.data["pts"]
        for e in client.log.events
        if e.type == "chunk_shown" and isinstance(e.data.get("pts"), int | float)
    }
    return [
        ChunkDone(
            i,
            by_index[i].t,
            int(by_index[i].data.get("frames_emitted", 33)),
            str(by_index[i].data.get("active_prompt")),
            tick_of(int(shown[i]), 1 / VIDEO_CLOCK_RATE, client.fps) if i in shown else None,
        )
        for i in range(last + 1)
    ]


def _fully_played(
    frames: Sequence[ReceivedFrame], chunks: list[ChunkDone], fps: float, first_tick: int
) -> tuple[list[ChunkDone], list[ChunkPlayback], float | None] | None:
    """The chunks, where they played and the event bias, once the last chunk fully played.

    Re-read on every poll: a chunk can complete before its first frame goes out (the playout
    still shows the previous one), so its `chunk_shown` may arrive after its `chunk_complete`.
    A server that marks chunks shown is waited for until it marked every one.
    """
    marked = [c.shown_tick is not None for c in chunks]
    if not frames or (any(marked) and not all(marked)):
        return None
    playback = chunk_playback(frames, chunks, fps, first_tick)
    bias = calibrate_bias(frames, chunks, playback, fps)
    if bias is not None:
        playback = chunk_playback(frames, chunks, fps, first_tick, bias)
    if len(playback) < len(chunks):
        return None
    end = playback[-1].first_tick + chunks[-1].frames - 1
    return (chunks, playback, bias) if frames[-1].tick >= end else None


# ---------------------------------------------------------------------------- steering


@dataclass(frozen=True)
class SteeredData:
    run: SteeringRun
    server: dict[str, Any] | None
    server_start_s: float | None
    client: str


def build_steering_report(
    data: SteeredData, args: argparse.Namespace, load_before: list[float] | None
) -> dict[str, Any]:
    run = data.run
    width, height = run.frame_size or (args.width, args.height)
    return {
        **run_fields(args, data.server, run.session, data.client, data.server_start_s, load_before),
        "engine": args.engine,
        "latency": args.latency,
        "playback_fps": args.playback_fps,
        "size": {"width": width, "height": height, "requested": args.width is not None},
        "emission_fps": run.fps,
        "emission_fps_requested": args.emission_fps,
        "settings": {
            "steady_chunks": args.steady_chunks,
            "commands": args.commands,
            "seed": args.seed,
            "timeout": args.timeout,
        },
        "connect_to_ready_s": round(run.connect.ready, 4) if run.connect else None,
        "steering": analyse(run),
        "timeline": timeline(run),
        "notes": STEERING_NOTES,
    }


def format_steering_table(report: dict[str, Any]) -> str:
    size = report["size"]
    head = [
        f"helios bench-realtime  {report['device']}",
        f"model {report['model']} (engine {report['engine']})  size {size['width']}x"
        f"{size['height']}  emission_fps {report['emission_fps']:g}  latency "
        f"{report['latency'] or 'server default'}  playback "
        f"{report.get('playback_fps') or 'follows the engine'}  load average before: "
        f"{report['load_average']['before']}",
        f"client {report['client']['generation']}",
        "",
    ]
    return "\n".join(head) + "\n" + format_steering(report)


# ---------------------------------------------------------------------------- report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m helios_bench.realtime ...`: the sub-command on its own."""
    parser = argparse.ArgumentParser(prog="helios")
    register_realtime(parser.add_subparsers(dest="command", required=True))
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["bench-realtime", *args_list])
    args.argv = args_list
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
