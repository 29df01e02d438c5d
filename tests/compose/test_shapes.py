"""Every process shape is one app served by one launcher: `helios serve`'s app and a worker's
session port, in this process under the production launcher (`web.server`) with a short head
deadline, resist the same attacks and check the same keys. (A gateway, which needs
PostgreSQL, gets the same in `tests/cluster/test_shapes.py`.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from tests.attacks import flood_is_refused, slow_heads_are_cut
from tests.live_server import app_server, free_port

from helios_serve.api.app import ApiConfig
from helios_serve.cluster.worker import WorkerOptions
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.compose.worker import session_port_app
from helios_serve.engine.fake import FakeEngine
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.web.auth import Access
from helios_serve.web.server import HttpOptions

MAX_CONNECTIONS = 8
KEY = "s3cret"
HEADERS = {"Reactor-API-Version": "1", "Reactor-API-Accept-Version": "1"}


def _http() -> HttpOptions:
    return HttpOptions(
        port=free_port(), max_connections=MAX_CONNECTIONS, log_level="warning", head_timeout_s=1
    )


@pytest.fixture
def serve_app(tmp_path: Path) -> Iterator[HttpOptions]:
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    sessions = Sessions(RealtimeConfig(), lambda frames, _scale: frames)
    app = build_app(engine, jobs=JobApi(parts, ApiConfig()), sessions=sessions)
    http = _http()
    with app_server(app, http):
        yield http


@pytest.fixture
def session_port(tmp_path: Path) -> Iterator[HttpOptions]:
    http = _http()
    options = WorkerOptions("w1", "postgresql://unused", str(tmp_path), tmp_path, session_port=1)
    app = session_port_app(FakeEngine(), options, Access((KEY,)), CollectorRegistry())
    with app_server(app, http):
        yield http


@pytest.mark.parametrize("shape", ["serve_app", "session_port"])
def test_slow_heads_are_cut_and_a_flood_is_refused(
    shape: str, request: pytest.FixtureRequest
) -> None:
    http: HttpOptions = request.getfixturevalue(shape)
    slow_heads_are_cut(http.host, http.port, within_s=8, sockets=MAX_CONNECTIONS // 2)
    flood_is_refused(http.host, http.port, MAX_CONNECTIONS)


def test_the_session_port_refuses_a_request_without_the_key(session_port: HttpOptions) -> None:
    with httpx.Client(base_url=session_port.url, timeout=30) as http:
        assert http.get("/health").status_code == 200  # open, as on every shape
        for method, path in (("GET", "/metrics"), ("POST", "/start_session")):
            refused = http.request(method, path, headers=HEADERS)
            assert refused.status_code == 401, (path, refused.text)
            assert refused.json()["error"]["code"] == "invalid_api_key"
            wrong = http.request(method, path, headers={**HEADERS, "Authorization": "Bearer x"})
            assert wrong.status_code == 401
        keyed = {**HEADERS, "Authorization": f"Bearer {KEY}"}
        assert http.get("/metrics", headers=keyed).status_code == 200
        started = http.post("/start_session", headers=keyed, json={})
        assert started.status_code == 200, started.text
        stopped = http.post("/stop_session", headers=keyed, json={})
        assert stopped.status_code == 200, stopped.text
