"""Real-time sessions through a gateway: placed on a worker with a free slot, signalling relayed.

Reactor's HTTP signalling (both client generations) reaches any gateway; the gateway places a
new session on an alive worker that registered a session URL (the one with the most free slots
first; the worker's own 503 is the last word, and the next worker is tried), remembers where it
runs in PostgreSQL, and relays every later request about it there. The SDP answer is the
worker's own, with the worker's ICE candidates: the media flows between the worker and the
client, never through the gateway (clients that cannot reach workers need a TURN server; see
the README). A session whose worker stopped reporting is described as `CLOSED` with
`error.code = "worker_lost"`.

The relay holds itself to the single node's rules: the worker is reached with its own
registered credential (the client's key stays here); bodies are capped as the worker caps
them, JSON ones read under the cap and parsed strictly here, upload PUTs streamed through and
cut off past the cap (never read whole); relayed paths stay under `/sessions/{id}/` once
decoded (no `..`); presigned upload URLs name this gateway, which relays the PUT.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from starlette.responses import Response

from helios_serve.cluster.registry import SessionHost, WorkerRegistry
from helios_serve.errors import InvalidInputError, NotFoundError, UnavailableError
from helios_serve.jobs.models import WORKER_LOST
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.web.bodies import (
    capped_stream,
    check_content_length,
    parse_json_off_loop,
    read_capped_body,
)
from helios_serve.web.errors import bad_request, is_created, is_full
from helios_serve.web.responses import CompactJSONResponse

SIGNALLING_CAP = 1024 * 1024
"""The most a signalling body may hold: a worker's cap (`realtime.reactor.request`, not
imported: it brings aiortc)."""
UPLOAD_CAP = RealtimeConfig().max_upload_bytes
"""The most an upload PUT may carry (a worker's own cap, with its default settings)."""
_SEGMENT = re.compile(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}$")
"""One segment of a relayed path, decoded: no `.`/`..`, no `/`, nothing to escape."""
FORWARDED = (
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

    async def forward(
        self, host: SessionHost, request: Request, path: str, body: bytes | AsyncIterator[bytes]
    ) -> httpx.Response:
        """`request` sent on to `host` with `body`, as the gateway: with the worker's own
        credential (the client's key was checked here and goes no further)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
        if host.token:
            headers["authorization"] = f"Bearer {host.token}"
        return await self._http.request(
            request.method,
            host.url.rstrip("/") + path,
            params=request.query_params,
            content=body,
            headers=headers,
        )

    async def place(self, request: Request, path: str) -> Response:
        """A new session: the first alive worker that takes it."""
        body = await read_signalling(request)
        hosts = await asyncio.to_thread(self._registry.session_hosts, self._timeout_s)
        for host in hosts:
            try:
                answer = await self.forward(host, request, path, body)
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

    async def to_session(
        self, request: Request, session_id: str, path: str, body: bytes | None = None
    ) -> Response:
        """Relay a request about `session_id` to its worker (`body`: read already)."""
        host = await asyncio.to_thread(self._registry.host_of, session_id, self._timeout_s)
        if host is None:
            raise NotFoundError(f"no session {session_id}", param="session_id")
        if not host.alive:
            return lost(session_id, host.worker)
        content = await relayed_body(request) if body is None else body
        try:
            answer = await self.forward(host, request, path, content)
        except httpx.HTTPError:
            return lost(session_id, host.worker)
        if request.method == "DELETE" or path == "/stop_session":
            await asyncio.to_thread(self._registry.forget, session_id)
        if (
            request.method == "POST"
            and path.endswith("/uploads")
            and is_created(answer.status_code)
        ):
            return upload_via_gateway(answer, host, request)
        return relay(answer)

    async def only_session(self, request: Request, body: bytes) -> str:
        """The session a local-mode request means: named, or the only one there is."""
        named = request.query_params.get("session_id")
        if not named and body.strip():
            with_id = await parse_json_off_loop(body)  # strict: a 400 for malformed JSON
            named = with_id.get("session_id") if isinstance(with_id, dict) else None
        if named:
            return session_segment(str(named))
        sessions = await asyncio.to_thread(self._registry.sessions)
        if len(sessions) != 1:
            raise InvalidInputError(
                "name the session (session_id): this cluster runs several",
                param="session_id",
                code="invalid_value",
            )
        return sessions[0]


async def read_signalling(request: Request) -> bytes:
    """A signalling body as the worker will judge it: under its cap (413 as it streams past),
    and a JSON object or nothing (400 `invalid_json` here, before any worker sees it)."""
    body = await read_capped_body(request, SIGNALLING_CAP)
    if body.strip() and not isinstance(await parse_json_off_loop(body), dict):
        raise bad_request("the body must be a JSON object", param=None, code="invalid_json")
    return body


async def relayed_body(request: Request) -> bytes | AsyncIterator[bytes]:
    """What a relayed request carries on: an upload PUT streamed under the upload cap (cut
    off with a 413 past it, never held whole), a signalling POST read and checked, and
    nothing for a GET or DELETE."""
    if request.method == "PUT":
        check_content_length(request.headers, UPLOAD_CAP)
        return capped_stream(request.stream(), UPLOAD_CAP)
    if request.method == "POST":
        return await read_signalling(request)
    return b""


def session_segment(value: str) -> str:
    """`value` if it is one plain path segment (an id); 404 for anything that could walk out
    of `/sessions/{id}/` once decoded (`..`, `/`, `%2e%2e`)."""
    if not _SEGMENT.match(value):
        raise NotFoundError("no such session route", param="session_id")
    return value


def session_path(session_id: str, rest: str = "") -> str:
    """`/sessions/{id}/{rest}` with every decoded segment checked and quoted again."""
    parts = [session_segment(session_id), *(session_segment(p) for p in rest.split("/") if rest)]
    return "/sessions/" + "/".join(quote(p, safe="") for p in parts)


def upload_via_gateway(answer: httpx.Response, host: SessionHost, request: Request) -> Response:
    """The worker's upload slot, its presigned URL naming this gateway (the address the client
    used; it relays the PUT) instead of a worker the client may not reach."""
    try:
        slot = json.loads(answer.content)
        worker_url = str(slot["presigned_url"])
    except (ValueError, KeyError, TypeError):
        return relay(answer)
    if worker_url.startswith(host.url.rstrip("/") + "/"):
        gateway = str(request.base_url).rstrip("/")
        slot["presigned_url"] = gateway + worker_url[len(host.url.rstrip("/")) :]
    return CompactJSONResponse(slot, status_code=answer.status_code)


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
        body = await read_signalling(request)
        session_id = await proxy.only_session(request, body)
        return await proxy.to_session(request, session_id, "/stop_session", body)

    @router.get("/session")
    async def local_session(request: Request) -> Response:
        session_id = await proxy.only_session(request, b"")
        return await proxy.to_session(request, session_id, "/session", b"")

    @router.api_route("/sessions/{session_id}", methods=["GET", "DELETE"])
    async def session(request: Request, session_id: str) -> Response:
        return await proxy.to_session(request, session_id, session_path(session_id))

    @router.api_route("/sessions/{session_id}/{rest:path}", methods=["GET", "POST", "PUT"])
    async def session_part(request: Request, session_id: str, rest: str) -> Response:
        path = session_path(session_id, rest)  # before any lookup: `..` never leaves here
        return await proxy.to_session(request, session_id, path)

    return router
