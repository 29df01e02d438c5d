"""Real-time sessions through a gateway: placed on a worker with a free slot, signalling relayed.

Reactor's HTTP signalling (both client generations) reaches any gateway; the gateway places a
new session on an alive worker that registered a session URL (the one with the most free slots
first; the worker's own 503 is the last word, and the next worker is tried), remembers where it
runs in PostgreSQL, and relays every later request about it there. The SDP answer is the
worker's own, with the worker's ICE candidates: the media flows between the worker and the
client, never through the gateway (clients that cannot reach workers need a TURN server; see
the README). A session whose worker stopped reporting is described as `CLOSED` with
`error.code = "worker_lost"`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from fastapi import APIRouter, Request
from starlette.responses import Response

from helios_serve.cluster.registry import SessionHost, WorkerRegistry
from helios_serve.errors import InvalidInputError, NotFoundError, UnavailableError
from helios_serve.jobs.models import WORKER_LOST
from helios_serve.web.errors import is_created, is_full
from helios_serve.web.responses import CompactJSONResponse

FORWARDED = (
    "authorization",
    "content-type",
    "accept",
    "reactor-api-version",
    "reactor-api-accept-version",
    "reactor-webrtc-version",
)
RETURNED = ("content-type", "retry-after", "location")


class NoFreeWorkerError(UnavailableError):
    """Every worker's real-time slots are taken, or no worker is up."""

    code = "no_free_worker"


class SessionProxy:
    def __init__(self, registry: WorkerRegistry, worker_timeout_s: float) -> None:
        self._registry = registry
        self._timeout_s = worker_timeout_s
        self._http = httpx.AsyncClient(timeout=30)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def forward(self, host: SessionHost, request: Request, path: str) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
        return await self._http.request(
            request.method,
            host.url.rstrip("/") + path,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )

    async def place(self, request: Request, path: str) -> Response:
        """A new session: the first alive worker that takes it."""
        hosts = await asyncio.to_thread(self._registry.session_hosts, self._timeout_s)
        for host in hosts:
            try:
                answer = await self.forward(host, request, path)
            except httpx.HTTPError:
                continue  # gone since its last heartbeat
            if is_full(answer.status_code):
                continue  # its slots are taken
            if is_created(answer.status_code):
                session_id = str(json.loads(answer.content)["session_id"])
                await asyncio.to_thread(self._registry.place, session_id, host.worker)
            return relay(answer)
        raise NoFreeWorkerError(
            "every worker's real-time slots are taken (or no worker is up); retry later"
        )

    async def to_session(self, request: Request, session_id: str, path: str) -> Response:
        """Relay a request about `session_id` to its worker."""
        host = await asyncio.to_thread(self._registry.host_of, session_id, self._timeout_s)
        if host is None:
            raise NotFoundError(f"no session {session_id}", param="session_id")
        if host.alive:
            try:
                answer = await self.forward(host, request, path)
            except httpx.HTTPError:
                pass
            else:
                if request.method == "DELETE" or path == "/stop_session":
                    await asyncio.to_thread(self._registry.forget, session_id)
                return relay(answer)
        return lost(session_id, host.worker)

    async def only_session(self, request: Request) -> str:
        """The session a local-mode request means: named, or the only one there is."""
        named = request.query_params.get("session_id")
        if not named and request.method == "POST":
            body = await request.body()
            with_id: Any = json.loads(body) if body.strip().startswith(b"{") else {}
            named = with_id.get("session_id") if isinstance(with_id, dict) else None
        if named:
            return str(named)
        sessions = await asyncio.to_thread(self._registry.sessions)
        if len(sessions) != 1:
            raise InvalidInputError(
                "name the session (session_id): this cluster runs several",
                param="session_id",
                code="invalid_value",
            )
        return sessions[0]


def relay(answer: httpx.Response) -> Response:
    headers = {k: v for k, v in answer.headers.items() if k.lower() in RETURNED}
    return Response(answer.content, status_code=answer.status_code, headers=headers)


def lost(session_id: str, worker: str) -> Response:
    """The session's description once its worker is gone: closed, and why."""
    return CompactJSONResponse(
        {
            "session_id": session_id,
            "state": "CLOSED",
            "error": {
                "code": WORKER_LOST,
                "message": f"the worker running this session ({worker}) stopped; start a new one",
            },
        }
    )


def build_session_router(proxy: SessionProxy) -> APIRouter:
    """Reactor's routes on a gateway, every one relayed to the worker that owns the session."""
    router = APIRouter()

    @router.post("/start_session")
    async def start_session(request: Request) -> Response:
        return await proxy.place(request, "/start_session")

    @router.post("/sessions")
    async def create_session(request: Request) -> Response:
        return await proxy.place(request, "/sessions")

    @router.post("/tokens")
    async def tokens() -> Response:
        # as a worker answers: self-hosted, any bearer is accepted (no worker needed for it)
        return CompactJSONResponse({"jwt": "local", "expires_at": int(time.time()) + 3600})

    @router.post("/stop_session")
    async def stop_session(request: Request) -> Response:
        session_id = await proxy.only_session(request)
        return await proxy.to_session(request, session_id, "/stop_session")

    @router.get("/session")
    async def local_session(request: Request) -> Response:
        session_id = await proxy.only_session(request)
        return await proxy.to_session(request, session_id, "/session")

    @router.api_route("/sessions/{session_id}", methods=["GET", "DELETE"])
    async def session(request: Request, session_id: str) -> Response:
        return await proxy.to_session(request, session_id, f"/sessions/{session_id}")

    @router.api_route("/sessions/{session_id}/{rest:path}", methods=["GET", "POST", "PUT"])
    async def session_part(request: Request, session_id: str, rest: str) -> Response:
        return await proxy.to_session(request, session_id, f"/sessions/{session_id}/{rest}")

    return router
