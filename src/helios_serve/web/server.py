"""The one HTTP launcher: every process shape (`helios serve`, a gateway, a worker's session
port) is served by uvicorn with the same hardening.

- a deadline for each request head (`HeadDeadlineProtocol`: slowloris),
- a cap on open connections and requests (beyond it: 503, before descriptors run out),
- a short keep-alive, and a cap on the request line and headers (64 KiB).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from helios_serve.web.http_protocol import HEAD_TIMEOUT_S, HeadDeadlineProtocol

MAX_HEAD_BYTES = 64 * 1024
KEEP_ALIVE_S = 5


@dataclass(frozen=True)
class HttpOptions:
    """Where a process listens, and how many connections it holds at once."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_connections: int = 256
    log_level: str = "info"
    head_timeout_s: float = HEAD_TIMEOUT_S
    """Every process serves with the default; tests shorten it to see the cut sooner."""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def uvicorn_config(app: Any, http: HttpOptions) -> uvicorn.Config:
    """The one uvicorn configuration."""
    return uvicorn.Config(
        app,
        host=http.host,
        port=http.port,
        log_level=http.log_level,
        http=_head_deadline(http.head_timeout_s),  # a request head must arrive in time
        limit_concurrency=http.max_connections,  # beyond: 503, before descriptors run out
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,  # request line and headers
    )


def _head_deadline(seconds: float) -> type[HeadDeadlineProtocol]:
    if seconds == HeadDeadlineProtocol.head_timeout_s:
        return HeadDeadlineProtocol
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout_s": seconds})


class Server(uvicorn.Server):  # type: ignore[misc]
    """Prints `ready_line` once listening. A SIGTERM/SIGINT stop is a clean exit (code 0);
    with `own_signals=False` the process handles signals itself (a worker's session port)."""

    def __init__(
        self, config: uvicorn.Config, ready_line: str | None = None, own_signals: bool = True
    ) -> None:
        super().__init__(config)
        self._ready_line = ready_line
        self._own_signals = own_signals

    async def startup(self, sockets: object = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._ready_line is not None:
            print(self._ready_line, flush=True)  # noqa: T201 (the line tests and scripts wait for)

    def handle_exit(self, sig: int, frame: object) -> None:
        # A graceful stop is a clean exit (code 0): don't re-raise the signal afterwards.
        super().handle_exit(sig, frame)
        self._captured_signals.clear()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._own_signals:
            yield
            return
        with super().capture_signals():
            yield


def serve_forever(app: Any, http: HttpOptions, ready_line: str | None = None) -> None:
    """Serve `app` until SIGTERM/SIGINT; the app's lifespan stops its parts in order."""
    Server(uvicorn_config(app, http), ready_line).run()


@contextlib.asynccontextmanager
async def serving(
    app: Any, http: HttpOptions, ready_line: str | None = None
) -> AsyncIterator[Server]:
    """Serve `app` in this event loop while the block runs, then stop it gracefully (its
    lifespan ends); signals stay the caller's."""
    server = Server(uvicorn_config(app, http), ready_line, own_signals=False)
    task = asyncio.create_task(server.serve(), name=f"helios-http-{http.port}")
    try:
        yield server
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
