"""`helios worker`: the engine behind a cluster's queue (`cluster.worker`) and, with a session
port, real-time sessions on the same engine: the app `compose.app.build_app` makes for them,
with the same auth and the same hardened launcher as every other process shape."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from helios_serve import __version__
from helios_serve.cluster.worker import WorkerOptions, serve_worker
from helios_serve.compose.app import Sessions, build_app
from helios_serve.compose.engine import build_upscaler
from helios_serve.core.protocols import Engine
from helios_serve.engine.metrics import EngineMetrics
from helios_serve.engine.process import ProcessEngine
from helios_serve.jobs.metrics import JobMetrics
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.web.auth import Access
from helios_serve.web.server import HttpOptions, serving


def session_port_app(
    engine: Engine, options: WorkerOptions, access: Access, registry: CollectorRegistry
) -> FastAPI:
    """Reactor's routes and the WebSocket stream on this worker's engine, with this worker's
    own `/metrics` (chunk time, checkpoint size and time, resumes, engine restarts). Gateways
    reach it with the worker's registered credential, operators with an `--api-key`; no
    browser calls it (the media flows direct, over WebRTC, not through this port)."""
    realtime = RealtimeConfig(
        max_sessions=options.max_sessions, server_version=f"helios-serve {__version__}"
    )
    sessions = Sessions(realtime, build_upscaler(engine.info.device, None))
    # the engine's lifecycle is `run_worker`'s (it outlives the session port)
    token = (options.session_token,) if options.session_token else ()  # never an empty key
    guarded = Access((*access.api_keys, *token), access.cors_origins, behind_gateway=True)
    return build_app(engine, sessions=sessions, access=guarded, metrics=registry, pages=False)


def run_worker(
    engine: Engine, options: WorkerOptions, access: Access, max_connections: int = 256
) -> int:
    """Until SIGTERM/SIGINT: jobs from the queue, and sessions on the session port if any."""
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    if isinstance(engine, ProcessEngine):
        engine.on_restart = EngineMetrics(registry).restarted
    app = None
    if options.session_port is not None:
        options = dataclasses.replace(options, session_token=secrets.token_urlsafe(32))
        app = session_port_app(engine, options, access, registry)
    http = HttpOptions(
        options.session_host, options.session_port or 0, max_connections, log_level="warning"
    )

    async def main() -> int:
        if isinstance(engine, ProcessEngine):
            await engine.start()
        try:
            port = serving(app, http) if app is not None else contextlib.nullcontext()
            async with port:
                return await serve_worker(engine, options, metrics=metrics)
        finally:
            await engine.close()

    code = asyncio.run(main())
    print("helios worker stopped", flush=True)  # noqa: T201
    return code
