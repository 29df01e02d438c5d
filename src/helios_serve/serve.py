"""Composition root: config → engine → job store and runner → app → uvicorn."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from helios_serve import __version__
from helios_serve.api.app import ApiConfig, ApiParts, create_app
from helios_serve.core.protocols import Engine
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.service import LocalEngine, describe
from helios_serve.engine.sr import SpandrelUpscaler, TorchResampler, Upscaler
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.metrics import JobMetrics
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.store import JobStore
from helios_serve.realtime.app_wiring import install_realtime
from helios_serve.realtime.config import RealtimeConfig

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 2
"""A job interrupted by a crash runs again once; a second crash fails it (`worker_lost`)."""


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    served_model_name: str | None = None
    api_keys: tuple[str, ...] = ()
    max_queue: int = 64
    max_sessions: int = 1
    emission_fps: float = 24.0
    sr_weights: Path | None = None


def build_parts(engine: Engine, data_dir: Path, idle_poll_s: float = 1.0) -> ApiParts:
    """Open the job store (recovering from any crash) and build the runner around `engine`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(data_dir / "jobs.db")
    report = store.recover_after_restart(MAX_ATTEMPTS)
    if report.requeued or report.failed:
        logger.warning(
            "recovered after a restart: %d jobs queued again, %d failed (worker_lost)",
            report.requeued,
            report.failed,
        )
    files = JobFiles(data_dir / "videos")
    swept = files.sweep_temp()
    if swept:
        logger.info("removed %d partial files left by an interrupted run", swept)
    registry = CollectorRegistry()
    runner = JobRunner(store, files, engine, JobMetrics(registry), idle_poll_s=idle_poll_s)
    return ApiParts(engine=engine, store=store, files=files, runner=runner, registry=registry)


def build_upscaler(loaded: LoadedModel, sr_weights: Path | None) -> Upscaler:
    """Session super-resolution on the model's device: a real network when given, else bicubic."""
    if sr_weights is not None:
        return SpandrelUpscaler(sr_weights, loaded.device)
    return TorchResampler(loaded.device)


def run_server(loaded: LoadedModel, options: ServerOptions) -> int:
    """Serve until SIGINT/SIGTERM; a graceful stop exits 0 and leaves no job half-claimed."""
    import uvicorn

    name = options.served_model_name or loaded.name
    aliases = tuple(a for a in {loaded.name} if a != name)
    engine = LocalEngine(loaded, describe(loaded, name, aliases))
    parts = build_parts(engine, options.data_dir)
    app = create_app(parts, ApiConfig(api_keys=options.api_keys, max_queue=options.max_queue))
    realtime = RealtimeConfig(
        max_sessions=options.max_sessions,
        emission_fps=options.emission_fps,
        server_version=f"helios-serve {__version__}",
    )
    install_realtime(app, engine, realtime, build_upscaler(loaded, options.sr_weights))
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="info")
    url = f"http://{options.host}:{options.port}"

    class AnnouncingServer(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: object = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                tiny = ", tiny random weights: output is noise" if loaded.is_tiny else ""
                print(
                    f"helios-serve ready: {url} (model {name}, {loaded.variant.value}{tiny})",
                    flush=True,
                )

        def handle_exit(self, sig: int, frame: object) -> None:
            # A graceful stop is a clean exit (code 0): don't re-raise the signal afterwards.
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    try:
        AnnouncingServer(config).run()
    finally:
        asyncio.run(engine.close())
        parts.store.close()
    print("helios-serve stopped", flush=True)
    return 0
