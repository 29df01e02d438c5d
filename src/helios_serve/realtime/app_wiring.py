"""install_realtime: the real-time routes and pages on an app `serve.build_app` makes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

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


def install_realtime(app: FastAPI, manager: SessionManager, cors_origins: tuple[str, ...]) -> None:
    """The Reactor routes, vLLM-Omni's `WS /v1/realtime/video`, the pages and their CORS.

    The sessions' lifecycle (`manager.shutdown` when the app stops) is the composition
    root's."""
    app.include_router(build_realtime_router(manager))
    app.include_router(build_ws_video_router(manager))  # vLLM-Omni's WS /v1/realtime/video
    _mount_playground(app)
    app.add_middleware(PathCors, origins=cors_origins)
