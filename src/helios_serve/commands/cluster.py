"""Cluster mode: `helios worker` (`compose.worker`), `helios gateway` (`compose.gateway`) and
`helios db upgrade`."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from helios_serve.commands import flags
from helios_serve.errors import InvalidInputError

if TYPE_CHECKING:
    from helios_serve.cluster.maintenance import Upkeep


def register(sub: flags.Subparsers) -> None:
    _register_worker(sub)
    _register_gateway(sub)
    p = sub.add_parser("db", help="cluster mode: the PostgreSQL schema")
    p.add_argument("action", choices=["upgrade"], help="upgrade: migrate to this version")
    p.add_argument("--database", required=True, metavar="URL")
    p.set_defaults(handler=run_db)


def _register_worker(sub: flags.Subparsers) -> None:
    p = sub.add_parser("worker", help="cluster mode: run jobs from the queue on this GPU")
    flags.add_model_flags(p)
    flags.add_cluster_flags(p)
    flags.add_guard_flags(p)
    flags.add_engine_flags(p)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--name", default=None, help="this worker's name (default: host-pid)")
    p.add_argument(
        "--session-port",
        type=int,
        default=None,
        help="serve real-time sessions on this port (gateways place sessions here and relay "
        "their signalling; the media flows between this worker and the client); off by default",
    )
    p.add_argument(
        "--session-host",
        default="127.0.0.1",
        help="the address gateways reach the session port at (bound too; default 127.0.0.1)",
    )
    p.add_argument("--max-sessions", type=int, default=1, help="real-time sessions at once")
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often the worker and its running job report in (default 2)",
    )
    p.set_defaults(handler=run_worker)


def _register_gateway(sub: flags.Subparsers) -> None:
    p = sub.add_parser("gateway", help="cluster mode: the HTTP API, no model")
    flags.add_cluster_flags(p)
    p.add_argument("--data-dir", type=Path, default=None, help="a local cache of job files")
    flags.add_listen_flags(p)
    p.add_argument("--max-queue", type=int, default=64)
    flags.add_guard_flags(p)
    p.set_defaults(handler=run_gateway)


def upkeep(args: argparse.Namespace) -> Upkeep:
    from helios_serve.cluster.maintenance import Upkeep

    if args.worker_timeout <= 0 or args.max_attempts < 1:
        raise InvalidInputError(
            "--worker-timeout must be positive and --max-attempts at least 1", param="cluster"
        )
    return Upkeep(
        worker_timeout_s=args.worker_timeout,
        max_attempts=args.max_attempts,
        interval_s=min(2.0, args.worker_timeout / 4),
    )


def run_worker(args: argparse.Namespace) -> int:
    from helios_serve.cluster.worker import WorkerOptions
    from helios_serve.compose.engine import build_engine
    from helios_serve.compose.worker import run_worker as run
    from helios_serve.jobs.datadir import DataDirLock

    options = WorkerOptions(
        name=args.name or f"{socket.gethostname()}-{os.getpid()}",
        database=args.database,
        storage=args.storage,
        data_dir=flags.data_dir(args),
        upkeep=upkeep(args),
        heartbeat_s=args.heartbeat_interval,
        session_host=args.session_host,
        session_port=args.session_port,
        max_sessions=args.max_sessions,
    )
    access = flags.access(args)
    connections = flags.max_connections(args)
    with DataDirLock(options.data_dir):  # its scratch folder is emptied at start: one owner
        return run(build_engine(flags.engine_options(args)), options, access, connections)


def run_gateway(args: argparse.Namespace) -> int:
    from helios_serve.compose.gateway import GatewayOptions
    from helios_serve.compose.gateway import run_gateway as run
    from helios_serve.jobs.datadir import DataDirLock
    from helios_serve.web.server import HttpOptions

    options = GatewayOptions(
        database=args.database,
        storage=args.storage,
        data_dir=flags.data_dir(args),
        http=HttpOptions(args.host, args.port, flags.max_connections(args)),
        access=flags.access(args),
        max_queue=args.max_queue,
        upkeep=upkeep(args),
    )
    with DataDirLock(options.data_dir):
        return run(options)


def run_db(args: argparse.Namespace) -> int:
    from helios_serve.jobs.postgres.schema import SCHEMA_VERSION
    from helios_serve.jobs.postgres.store import PostgresJobStore

    PostgresJobStore(args.database).close()  # opening migrates
    print(f"the database is at schema version {SCHEMA_VERSION}")  # noqa: T201
    return 0
