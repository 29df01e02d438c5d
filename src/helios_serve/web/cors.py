"""Cross-origin access by path: open where Reactor's browser SDK needs it, closed elsewhere.

Any web page the operator visits could otherwise list, download and delete jobs on
`127.0.0.1:8000` from the browser. The real-time signalling routes stay open to every origin
(the SDK runs on the app's own origin and calls the model server); the job API and `/metrics`
take cross-origin calls only from the origins given with `--cors-origin`.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

CLOSED_PREFIXES = ("/v1/videos", "/metrics")
_METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]


def is_closed(path: str) -> bool:
    return path.startswith(CLOSED_PREFIXES)


class PathCors:
    """CORS with two policies chosen by path (`is_closed`)."""

    def __init__(
        self,
        app: ASGIApp,
        origins: tuple[str, ...] = (),
        closed: Callable[[str], bool] = is_closed,
    ) -> None:
        self._open = CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=_METHODS,
            allow_headers=["*"],
            expose_headers=["*"],
            max_age=600,
        )
        self._closed: ASGIApp = (
            CORSMiddleware(
                app,
                allow_origins=list(origins),
                allow_methods=_METHODS,
                allow_headers=["*"],
                expose_headers=["*"],
                allow_credentials=True,
                max_age=600,
            )
            if origins
            else app
        )
        self._is_closed = closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._is_closed(scope["path"]):
            await self._closed(scope, receive, send)
        else:
            await self._open(scope, receive, send)
