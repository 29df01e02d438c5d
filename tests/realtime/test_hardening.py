"""The attacks of issue 10 on the real-time side, over real uvicorn on loopback: a WebSocket with
no key or a foreign origin, pending sessions without end, uploads to sessions that cannot run,
bodies too large to read and JSON too deep or too wide to parse."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.live_server import app_server
from tests.reactor_client import HEADERS
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.fake import FakeEngine
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.ws.endpoint import PATH
from helios_serve.web.auth import Access

from .conftest import np_upscale

KEY = "sk-test-0123456789"
ALLOWED = "https://app.example"
CREATE = {"model": {"name": "helios"}, "client_info": {"sdk_version": "2.9.0"}}


def _app(tmp: Path, config: RealtimeConfig, keys: tuple[str, ...] = ()) -> Iterator[str]:
    engine = FakeEngine()
    parts = build_parts(engine, tmp, idle_poll_s=0.05)
    app = build_app(
        engine,
        jobs=JobApi(parts, ApiConfig()),
        sessions=Sessions(config, np_upscale),
        access=Access(keys, (ALLOWED,)),
    )
    try:
        with app_server(app) as url:
            yield url
    finally:
        parts.store.close()


@pytest.fixture(scope="module")
def keyed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _app(tmp_path_factory.mktemp("ws-auth"), RealtimeConfig(), (KEY,))


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    config = RealtimeConfig(
        width=64,
        height=64,
        settings=SamplingSettings(),
        max_pending_sessions=3,
        pending_timeout_s=1.0,
        watchdog_interval_s=0.1,
        idle_timeout_s=60,
        max_upload_bytes=600,
        max_upload_total_bytes=1000,
    )
    url = _app(tmp_path_factory.mktemp("limits"), config)
    base = next(url)
    try:
        with httpx.Client(base_url=base, headers=HEADERS, timeout=20) as client:
            yield client
    finally:
        next(url, None)


# -- 1. the WebSocket takes the same key as HTTP, and only from allowed origins -----------


async def _ws_outcome(url: str, query: str, **kwargs: object) -> str:
    """'open' when the server answers a ping, else 'closed <code>'."""
    target = url.replace("http", "ws") + PATH + query
    try:
        async with connect(target, open_timeout=10, **kwargs) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "session.ping"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return "open" if reply["type"] == "session.pong" else f"reply {reply}"
    except ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"


@pytest.mark.parametrize(
    ("how", "kwargs", "expected"),
    [
        ("no key", {}, "closed 1008"),
        ("wrong key", {"additional_headers": {"Authorization": "Bearer nope"}}, "closed 1008"),
        ("empty bearer", {"additional_headers": {"Authorization": "Bearer "}}, "closed 1008"),
        ("header", {"additional_headers": {"Authorization": f"Bearer {KEY}"}}, "open"),
        ("query", {"__query": f"?api_key={KEY}"}, "open"),
        ("subprotocol", {"subprotocols": ["bearer", KEY]}, "open"),
        (
            "foreign origin",
            {
                "additional_headers": {"Authorization": f"Bearer {KEY}"},
                "origin": "https://evil.example",
            },
            "closed 1008",
        ),
        (
            "allowed origin",
            {"additional_headers": {"Authorization": f"Bearer {KEY}"}, "origin": ALLOWED},
            "open",
        ),
    ],
)
def test_websocket_needs_the_key_and_an_allowed_origin(
    keyed_url: str, how: str, kwargs: dict[str, object], expected: str
) -> None:
    query = str(kwargs.pop("__query", ""))
    outcome = asyncio.run(_ws_outcome(keyed_url, query, **kwargs))
    assert outcome == expected, how


def test_websocket_subprotocol_key_is_echoed_as_bearer(keyed_url: str) -> None:
    async def main() -> str | None:
        target = keyed_url.replace("http", "ws") + PATH
        async with connect(target, subprotocols=["bearer", KEY]) as ws:  # type: ignore[list-item]
            return ws.subprotocol

    assert asyncio.run(main()) == "bearer"  # a browser drops a socket whose protocol isn't echoed


def test_deeply_nested_websocket_message_closes_1007(keyed_url: str) -> None:
    async def main() -> tuple[str, int | None]:
        target = keyed_url.replace("http", "ws") + PATH
        headers = {"Authorization": f"Bearer {KEY}"}
        async with connect(target, additional_headers=headers) as ws:
            await ws.send("[" * 100_000 + "]" * 100_000)
            reply = json.loads(await ws.recv())
            await ws.wait_closed()
            return reply["code"], ws.close_code

    assert asyncio.run(main()) == ("invalid_json", 1007)


# -- 8. pending sessions are capped and expire; uploads only for sessions that may run ---------


def _close_all(http: httpx.Client, ids: list[str]) -> None:
    for session_id in ids:
        http.delete(f"/sessions/{session_id}")


def test_pending_sessions_are_capped(limited: httpx.Client) -> None:
    ids: list[str] = []
    try:
        active = limited.post("/sessions", json=CREATE).json()
        ids.append(active["session_id"])
        assert active["state"] == "ACTIVE"
        for _ in range(3):
            pending = limited.post("/sessions", json=CREATE)
            assert pending.json()["state"] == "PENDING"
            ids.append(pending.json()["session_id"])
        refused = limited.post("/sessions", json=CREATE)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "session_limit_reached"
        assert refused.headers["Retry-After"]
    finally:
        _close_all(limited, ids)


def test_pending_session_nobody_polls_expires(limited: httpx.Client) -> None:
    active = limited.post("/sessions", json=CREATE).json()["session_id"]
    try:
        forgotten = limited.post("/sessions", json=CREATE).json()["session_id"]
        watched = limited.post("/sessions", json=CREATE).json()["session_id"]
        for _ in range(15):  # 3 s of polling `watched` only, three times the timeout
            assert limited.get(f"/sessions/{watched}").json()["state"] == "PENDING"
            time.sleep(0.2)
        assert limited.get(f"/sessions/{forgotten}").json()["state"] == "CLOSED"
        assert limited.get(f"/sessions/{watched}").json()["state"] == "PENDING"
        limited.delete(f"/sessions/{watched}")
    finally:
        _close_all(limited, [active])


def test_no_uploads_to_a_pending_session(limited: httpx.Client) -> None:
    active = limited.post("/sessions", json=CREATE).json()["session_id"]
    pending = limited.post("/sessions", json=CREATE).json()["session_id"]
    try:
        refused = limited.post(f"/sessions/{pending}/uploads", json={"name": "a.png", "size": 10})
        assert refused.status_code == 503
        assert "PENDING" in refused.json()["error"]["message"]
        allowed = limited.post(f"/sessions/{active}/uploads", json={"name": "a.png", "size": 10})
        assert allowed.status_code == 200
    finally:
        _close_all(limited, [active, pending])


def test_upload_budget_is_shared_by_all_sessions(limited: httpx.Client) -> None:
    first = limited.post("/sessions", json=CREATE).json()["session_id"]
    try:
        upload = {"name": "a.png", "size": 600}
        assert limited.post(f"/sessions/{first}/uploads", json=upload).status_code == 200
        over = limited.post(f"/sessions/{first}/uploads", json=upload)
        assert over.status_code == 503
        assert over.json()["error"]["code"] == "upload_budget_exhausted"
    finally:
        _close_all(limited, [first])
    second = limited.post("/sessions", json=CREATE).json()["session_id"]
    try:  # the first session's reservation went with it
        assert limited.post(f"/sessions/{second}/uploads", json=upload).status_code == 200
    finally:
        _close_all(limited, [second])


# -- 9. bodies over the cap are refused before they are read ---------------------------------


def _raw_exchange(url: str, head: str, body: bytes = b"") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head.encode() + body)
        return sock.recv(65536)


def test_declared_oversized_body_is_refused_unread(limited: httpx.Client) -> None:
    # 300 MB declared, none sent: the answer comes without the server waiting for the body
    head = (
        "POST /start_session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 300000000\r\n\r\n"
    )
    reply = _raw_exchange(str(limited.base_url).rstrip("/"), head)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"request_too_large" in reply


# -- 11. JSON too deep or too wide is a 400, never a 500 -------------------------------------


@pytest.mark.parametrize("path", ["/start_session", "/sessions", "/stop_session"])
def test_deep_json_is_a_400(limited: httpx.Client, path: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = limited.post(path, content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_json_with_too_many_keys_is_a_400(limited: httpx.Client) -> None:
    wide = json.dumps({f"k{i}": 0 for i in range(20_000)})
    response = limited.post("/sessions", content=wide, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "object keys" in response.json()["error"]["message"]
