"""`helios serve`: everything in one process (`compose.single`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from helios_serve.commands import flags
from helios_serve.errors import InvalidInputError


def register(sub: flags.Subparsers) -> None:
    p = sub.add_parser("serve", help="start the HTTP server")
    flags.add_model_flags(p)
    p.add_argument(
        "--served-model-name",
        default=None,
        help="the model id clients send and see (default: --model); --model stays "
        "accepted as an alias",
    )
    flags.add_listen_flags(p)
    p.add_argument(
        "--max-queue", type=int, default=64, help="queued jobs before POST /v1/videos answers 429"
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=1,
        help="real-time sessions at once (more get 503 or wait PENDING)",
    )
    p.add_argument(
        "--emission-fps", type=float, default=24.0, help="frame rate real-time sessions play at"
    )
    p.add_argument(
        "--session-idle-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a real-time session whose client is silent this long (no message, no signalling, "
        "no RTCP) ends and frees its slot; a client back sooner (reconnect()) keeps it "
        "(default 30)",
    )
    p.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN/TURN server for real-time peers (stun:HOST:PORT, turn:USER:PASS@HOST:PORT); "
        "repeatable; default none: no STUN server is contacted (a LAN needs none)",
    )
    p.add_argument(
        "--sr-weights",
        type=Path,
        default=None,
        help="an SR network (spandrel-loadable) for set_sr_scale 2x/4x; "
        "default: bicubic resampling on the model's device",
    )
    flags.add_guard_flags(p)
    flags.add_engine_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from helios_serve.compose.engine import build_engine
    from helios_serve.compose.single import ServerOptions, prepare_store, run_server
    from helios_serve.jobs.datadir import DataDirLock
    from helios_serve.web.server import HttpOptions

    if args.max_queue < 1 or args.max_sessions < 1 or args.emission_fps <= 0:
        raise InvalidInputError(
            "--max-queue and --max-sessions must be at least 1, --emission-fps positive",
            param="serve",
        )
    if not 1 <= args.session_idle_timeout <= 3600:
        raise InvalidInputError("--session-idle-timeout must be 1..3600 seconds", param="serve")
    ice_servers = _ice_servers(args.ice_server)
    options = ServerOptions(
        data_dir=flags.data_dir(args),
        http=HttpOptions(args.host, args.port, flags.max_connections(args)),
        access=flags.access(args),
        max_queue=args.max_queue,
        max_sessions=args.max_sessions,
        emission_fps=args.emission_fps,
        session_idle_timeout_s=args.session_idle_timeout,
        sr_weights=args.sr_weights,
        ice_servers=ice_servers,
    )
    # before the model loads: a second server on this folder, or an unusable database, must
    # stop at once
    with DataDirLock(options.data_dir):
        store = prepare_store(options.data_dir)
        try:
            engine = build_engine(flags.engine_options(args))
        except BaseException:
            store.close()
            raise
        return run_server(engine, options, store)


def _ice_servers(urls: list[str]) -> tuple[dict[str, Any], ...]:
    from helios_serve.realtime.reactor.peer import ice_server_entry

    try:
        return tuple(ice_server_entry(url) for url in urls)
    except ValueError as exc:
        raise InvalidInputError(f"--ice-server: {exc}", param="serve") from None
