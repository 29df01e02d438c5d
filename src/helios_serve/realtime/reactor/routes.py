"""HTTP routes of Reactor's protocol: local and coordinator sessions, WebRTC signalling, uploads.

Thin: parse, call the `SessionRegistry`, shape the JSON the SDK reads. Domain errors (no such
session, slots full, a PENDING session, upload limits) are mapped by the app's one error table
(`web.errors`). Success statuses are what the SDKs check: 202
for sdp_params (2.9.0 and the newer clients), 201 for a registered connection (the newer
clients).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from helios_serve.errors import ConflictError, NotFoundError, UnavailableError
from helios_serve.realtime.reactor.capabilities import session_capabilities
from helios_serve.realtime.reactor.handle import (
    LEGACY_CONNECTION,
    Connection,
    Negotiation,
    SessionHandle,
    SessionMode,
    Status,
)
from helios_serve.realtime.reactor.registry import SessionRegistry
from helios_serve.realtime.reactor.request import (
    check_versions,
    parse_ice_candidates,
    parse_sdp_params,
    parse_upload,
    read_json,
    read_upload_body,
    stream_overrides,
)
from helios_serve.web.errors import bad_request
from helios_serve.web.responses import CompactJSONResponse

WEBRTC = "/sessions/{session_id}/transport/webrtc"
CONNECTION = WEBRTC + "/connections/{connection_id}"


def session_description(handle: SessionHandle, sessions: SessionRegistry) -> dict[str, Any]:
    """The session description; transport and capabilities only once a slot is assigned."""
    body: dict[str, Any] = {
        "session_id": handle.id,
        "state": handle.status.value,
        "cluster": "local",
        "model": {"name": "helios"},
        "server_info": {"server_version": sessions.config.server_version},
    }
    if handle.status is Status.ACTIVE:
        body["selected_transport"] = {"protocol": "webrtc", "version": "1.0"}
        body["capabilities"] = session_capabilities(sessions.config.emission_fps)
    return body


def caller(request: Request) -> str:
    """Who sends `request`, as far as a stop without an id can tell: the client's address and
    the page's `Origin` (a page on another site in the same browser is someone else)."""
    host = request.client.host if request.client is not None else ""
    return f"{host} {request.headers.get('origin', '')}"


def _connection(handle: SessionHandle, connection_id: str) -> Connection:
    """A registered connection of the session; 404 for anything else (ids are uint32)."""
    connection = (
        handle.connections.get(int(connection_id))
        if connection_id.isdigit() and len(connection_id) <= 10
        else None
    )
    if connection is None or connection.id == LEGACY_CONNECTION:
        raise NotFoundError(
            f"no connection {connection_id[:20]!r} in session {handle.id}", param="connection_id"
        )
    return connection


def _answer(negotiation: Negotiation, connection_id: int | None) -> Response:
    """GET sdp_params: 202 while negotiating, then the answer (400 if negotiation failed)."""
    if negotiation.error is not None:
        raise bad_request(f"negotiation failed: {negotiation.error}", param="sdp_offer")
    if negotiation.answer is None:
        return CompactJSONResponse({}, status_code=202)
    body: dict[str, Any] = {"sdp_answer": negotiation.answer}
    if connection_id is not None:
        body["connection_id"] = connection_id
    return CompactJSONResponse(body)


def build_realtime_router(sessions: SessionRegistry) -> APIRouter:
    """All Reactor routes around `sessions`; every route checks the Reactor version headers."""
    router = APIRouter(dependencies=[Depends(check_versions)], tags=["realtime"])
    router.include_router(_session_routes(sessions))
    router.include_router(_transport_routes(sessions))
    router.include_router(_upload_routes(sessions))
    return router


def _session_routes(sessions: SessionRegistry) -> APIRouter:
    router = APIRouter()

    async def create(request: Request, mode: SessionMode) -> SessionHandle:
        body = await read_json(request)
        overrides = stream_overrides(body.get("extra_args"), sessions.engine.info)
        return await sessions.create(mode, overrides, caller(request))

    @router.post("/start_session")
    async def start_session(request: Request) -> dict[str, Any]:
        return session_description(await create(request, SessionMode.LOCAL), sessions)

    @router.post("/stop_session")
    async def stop_session(request: Request) -> dict[str, Any]:
        # No id on the wire from the SDKs: stop the named one if given, else the caller's own.
        body = await read_json(request)
        wanted = body.get("session_id") or request.query_params.get("session_id")
        wanted = wanted if isinstance(wanted, str) and wanted else None
        stopped = [h.id for h in sessions.stoppable(caller(request), wanted)]
        for session_id in stopped:
            await sessions.close(session_id, "stop_session")
        return {"stopped": stopped}

    @router.post("/sessions")
    async def create_session(request: Request) -> dict[str, Any]:
        return session_description(await create(request, SessionMode.COORDINATOR), sessions)

    @router.get("/session")
    async def get_local_session(request: Request) -> dict[str, Any]:
        # Local mode's join, by id only: a session's id is its creator's secret, so this never
        # hands one out (it did, to any origin: anyone could then take the session over).
        wanted = request.query_params.get("session_id")
        if not wanted:
            raise NotFoundError("join a session by its id: GET /session?session_id=...")
        return session_description(sessions.live(wanted), sessions)

    @router.get("/sessions/{session_id}")
    async def get_session(session_id: str) -> dict[str, Any]:
        return session_description(sessions.get(session_id), sessions)

    @router.delete("/sessions/{session_id}")
    async def delete_session(session_id: str) -> dict[str, Any]:
        handle = sessions.live(session_id)
        await sessions.close(handle.id, "deleted by the client")
        return session_description(handle, sessions)

    return router


def _transport_routes(sessions: SessionRegistry) -> APIRouter:
    router = APIRouter()

    @router.post("/tokens")
    async def tokens() -> dict[str, Any]:
        # Self-hosted: any bearer is accepted, so the token only has to look like one.
        return {"jwt": "local", "expires_at": int(time.time()) + 3600}

    @router.get(WEBRTC + "/ice_servers")
    async def ice_servers(session_id: str) -> dict[str, Any]:
        sessions.live(session_id)
        return {"ice_servers": list(sessions.config.ice_servers)}

    async def offer(session_id: str, request: Request) -> Response:
        # The 2.9.0 flow: no connection registered, JSON on the "data" channel.
        handle = sessions.live(session_id)
        if handle.status is not Status.ACTIVE:
            raise ConflictError("the session has no slot yet (PENDING)")
        sdp, mapping = parse_sdp_params(await read_json(request))
        await sessions.connect(handle, handle.legacy_connection(), sdp, mapping)
        return CompactJSONResponse({}, status_code=202)

    router.add_api_route(WEBRTC + "/sdp_params", offer, methods=["POST", "PUT"])

    @router.get(WEBRTC + "/sdp_params")
    async def answer(session_id: str) -> Response:
        handle = sessions.live(session_id)
        return _answer(handle.legacy_connection().negotiation, None)

    router.include_router(_connection_routes(sessions))
    return router


def _connection_routes(sessions: SessionRegistry) -> APIRouter:
    """The newer clients' flow (reactor-sdk 1.x, JS SDK >= 2.12): register a connection, trickle
    ICE candidates to it (some before the offer), offer and poll for the answer on it."""
    router = APIRouter()

    @router.post(WEBRTC + "/connections", status_code=201)
    async def register(session_id: str, request: Request) -> dict[str, Any]:
        handle = sessions.live(session_id)
        await read_json(request)  # validated, not used: the client sends {}
        if handle.status is not Status.ACTIVE:
            raise UnavailableError("the session has no slot yet (PENDING); try again later")
        return {"connection_id": handle.register_connection().id}

    async def offer(session_id: str, connection_id: str, request: Request) -> Response:
        handle = sessions.live(session_id)
        connection = _connection(handle, connection_id)
        sdp, mapping = parse_sdp_params(await read_json(request))
        await sessions.connect(handle, connection, sdp, mapping)
        return CompactJSONResponse({"connection_id": connection.id}, status_code=202)

    router.add_api_route(CONNECTION + "/sdp_params", offer, methods=["POST", "PUT"])

    @router.get(CONNECTION + "/sdp_params")
    async def answer(session_id: str, connection_id: str) -> Response:
        connection = _connection(sessions.live(session_id), connection_id)
        return _answer(connection.negotiation, connection.id)

    @router.post(CONNECTION + "/ice_candidates")
    async def ice_candidates(session_id: str, connection_id: str, request: Request) -> Response:
        handle = sessions.live(session_id)
        connection = _connection(handle, connection_id)
        candidates, final = parse_ice_candidates(await read_json(request))
        await handle.add_candidates(connection, candidates, final)
        return CompactJSONResponse({}, status_code=202)

    return router


def _upload_routes(sessions: SessionRegistry) -> APIRouter:
    router = APIRouter()

    @router.post("/sessions/{session_id}/uploads")
    async def reserve_upload(session_id: str, request: Request) -> dict[str, Any]:
        handle = sessions.live(session_id)
        name, size, mime = parse_upload(await read_json(request))
        if handle.status is not Status.ACTIVE:
            raise UnavailableError(
                "the session has no slot yet (PENDING); upload once it is ACTIVE"
            )
        slot = handle.uploads.reserve(name, size, mime)
        url = f"{str(request.base_url).rstrip('/')}/sessions/{handle.id}/uploads/{slot.id}"
        return {"presigned_id": slot.id, "presigned_url": url, "path": slot.path}

    @router.put("/sessions/{session_id}/uploads/{upload_id}")
    async def put_upload(session_id: str, upload_id: str, request: Request) -> dict[str, Any]:
        uploads = sessions.live(session_id).uploads
        slot = uploads.slot(upload_id)
        uploads.write(upload_id, await read_upload_body(request, slot.size, uploads.max_bytes))
        return {"presigned_id": slot.id, "size": slot.size}

    return router
