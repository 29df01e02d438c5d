"""install_realtime and install_pages: the real-time routes, and the browser pages, on an app
`compose.app.build_app` makes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from helios_serve.realtime.reactor.registry import SessionRegistry
from helios_serve.realtime.reactor.routes import build_realtime_router
from helios_serve.realtime.ws.endpoint import build_ws_video_router

STATIC_DIR = Path(__file__).parent / "static"
"""The browser pages (the playground, the videos page): plain JavaScript, no build step."""


def install_pages(app: FastAPI) -> None:
    """The playground at `/` and the videos page at `/videos`, with their files: clients of
    the routes any server answers (a gateway relays the sessions' and runs the jobs')."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/videos", include_in_schema=False)
    async def videos_page() -> FileResponse:
        """Video jobs in the browser: a client of `/v1/videos` (it shares the playground's
        look, so it is served from the same folder)."""
        return FileResponse(STATIC_DIR / "videos.html", media_type="text/html")


def install_realtime(app: FastAPI, sessions: SessionRegistry) -> None:
    """Reactor's routes on `sessions`, and vLLM-Omni's `WS /v1/realtime/video` on the same
    streams and slots (the composition root closes the sessions when the app stops)."""
    app.include_router(build_realtime_router(sessions))
    app.include_router(build_ws_video_router(sessions.host))
