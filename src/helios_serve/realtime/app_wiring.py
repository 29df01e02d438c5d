"""install_realtime: compose the real-time sessions onto an existing FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from helios_serve.core.protocols import Engine
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.driver import Upscaler
from helios_serve.realtime.manager import SessionManager
from helios_serve.realtime.reactor.routes import build_realtime_router
from helios_serve.realtime.ws.endpoint import build_ws_video_router
from helios_serve.web.cors import PathCors

STATIC_DIR = Path(__file__).parent / "static"
"""The browser pages (the playground, the videos page): plain JavaScript, no build step."""


def _mount_playground(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/videos", include_in_schema=False)
    async def videos_page() -> FileResponse:
        """Video jobs in the browser: a client of `/v1/videos` (it shares the playground's
        look, so it is served from the same folder)."""
        return FileResponse(STATIC_DIR / "videos.html", media_type="text/html")


def install_realtime(
    app: FastAPI,
    engine: Engine,
    config: RealtimeConfig,
    upscaler: Upscaler,
    cors_origins: tuple[str, ...] = (),
) -> SessionManager:
    """Add the Reactor routes, vLLM-Omni's `WS /v1/realtime/video` and CORS to `app`, and
    close every session when it shuts down.

    Call after `create_app` (the error handlers it installs shape realtime errors too) and
    before the app starts serving.
    """
    manager = SessionManager(engine, config, upscaler)
    app.include_router(build_realtime_router(manager))
    app.include_router(build_ws_video_router(manager))  # vLLM-Omni's WS /v1/realtime/video
    _mount_playground(app)
    app.add_middleware(PathCors, origins=cors_origins)
    # The app may already own a lifespan (create_app's job runner); wrap it, don't replace it.
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            try:
                yield state
            finally:
                await manager.shutdown()

    app.router.lifespan_context = lifespan
    return manager
