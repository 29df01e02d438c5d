"""Coordinator mode, version headers and CORS over real HTTP (no media)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.live_server import app_server
from tests.reactor_client import HEADERS

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.fake import FakeEngine
from helios_serve.realtime.config import RealtimeConfig

from .conftest import np_upscale

CREATE = {
    "model": {"name": "helios"},
    "client_info": {"sdk_version": "2.9.0"},
    "supported_transports": [{"protocol": "webrtc", "version": "1.0"}],
}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path_factory.mktemp("coord"))
    config = RealtimeConfig(width=64, height=64, settings=SamplingSettings(), idle_timeout_s=30)
    app = build_app(engine, jobs=JobApi(parts, ApiConfig()), sessions=Sessions(config, np_upscale))
    with app_server(app) as url, httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
        yield client
    parts.store.close()


def test_pending_session_waits_for_a_slot(http: httpx.Client) -> None:
    first = http.post("/sessions", json=CREATE).json()
    assert first["state"] == "ACTIVE"
    assert first["selected_transport"] == {"protocol": "webrtc", "version": "1.0"}
    assert first["model"] == {"name": "helios"}
    assert first["cluster"] == "local"
    second = http.post("/sessions", json=CREATE).json()
    assert second["state"] == "PENDING"
    assert "capabilities" not in second
    assert "selected_transport" not in http.get(f"/sessions/{second['session_id']}").json()
    offer = f"/sessions/{second['session_id']}/transport/webrtc/sdp_params"
    assert http.post(offer, json={"sdp_offer": "v=0"}).status_code == 409
    assert http.delete(f"/sessions/{first['session_id']}").status_code == 200
    assert http.get(f"/sessions/{first['session_id']}").json()["state"] == "CLOSED"
    assert http.delete(f"/sessions/{first['session_id']}").status_code == 404
    promoted = http.get(f"/sessions/{second['session_id']}").json()
    assert promoted["state"] == "ACTIVE"
    assert promoted["capabilities"]["protocol_version"] == "1.0"
    assert (
        http.get(f"/sessions/{second['session_id']}/transport/webrtc/sdp_params").status_code == 202
    )
    assert http.delete(f"/sessions/{second['session_id']}").status_code == 200


def test_unknown_session_is_404_in_the_error_envelope(http: httpx.Client) -> None:
    got = http.get("/sessions/nope/transport/webrtc/ice_servers")
    assert got.status_code == 404
    assert got.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Reactor-API-Version": "0"}, 426),
        ({"Reactor-API-Version": "2", "Reactor-API-Accept-Version": "2"}, 501),
        ({"Reactor-API-Version": "2", "Reactor-API-Accept-Version": "1,2"}, 200),
        ({"Reactor-WebRTC-Version": "2.0"}, 501),
        ({"Reactor-API-Version": "banana"}, 400),
    ],
)
def test_version_headers(http: httpx.Client, headers: dict[str, str], status: int) -> None:
    got = http.post("/sessions", json=CREATE, headers=headers)
    assert got.status_code == status, got.text
    if status == 200:
        assert http.delete(f"/sessions/{got.json()['session_id']}").status_code == 200


def test_bad_signalling_bodies(http: httpx.Client) -> None:
    sid = http.post("/sessions", json=CREATE).json()["session_id"]
    base = f"/sessions/{sid}/transport/webrtc/sdp_params"
    assert http.post(base, json={"track_mapping": []}).status_code == 400
    assert http.post(base, content=b"{not json").status_code == 400
    assert http.post(base, json={"sdp_offer": "garbage"}).status_code == 202
    for _ in range(50):  # a broken offer fails in the background and GET says so
        got = http.get(base)
        if got.status_code != 202:
            break
    assert got.status_code == 400
    bad_args = http.post("/start_session", json={"extra_args": {"width": 65}})
    assert bad_args.status_code in (400, 503)
    assert http.delete(f"/sessions/{sid}").status_code == 200


def test_cors_on_session_routes(http: httpx.Client) -> None:
    got = http.options(
        "/start_session",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "reactor-api-version,authorization,content-type",
        },
    )
    assert got.status_code == 200
    assert got.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
    plain = http.get("/sessions/x", headers={"Origin": "http://a.example"})
    assert plain.headers["access-control-allow-origin"] == "*"
