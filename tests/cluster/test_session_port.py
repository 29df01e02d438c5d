"""Issue 24's attacks on a cluster's real-time side, in this process: a worker serving its
session port (on a fake engine) and a keyed gateway on the module's PostgreSQL and S3.

- The worker's session port answers only the gateways (its registered credential) and
  `--api-key` holders, takes no cross-origin call, and refuses requests from other origins.
- The gateway relays with that credential; its relays cap bodies as the worker does (a 300 MB
  chunked body leaves its memory flat), confine paths to `/sessions/{id}/` once decoded,
  parse JSON strictly (400, not 500, at `/stop_session`), and hand out presigned upload URLs
  that name the gateway, relaying the PUT.
- The job API behind the gateway refuses cross-site form posts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from tests.live_server import app_server, free_port
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helios_serve.cluster.maintenance import Upkeep
from helios_serve.cluster.session_proxy import SIGNALLING_CAP, UPLOAD_CAP
from helios_serve.cluster.worker import WorkerOptions, serve_worker
from helios_serve.compose.gateway import GatewayOptions, build_gateway
from helios_serve.compose.worker import session_port_app
from helios_serve.engine.fake import FakeEngine
from helios_serve.jobs.postgres.store import PostgresJobStore
from helios_serve.web.auth import Access
from helios_serve.web.server import HttpOptions

from .conftest import LocalCluster

KEY = "gateway-key"
KEYED = {"Authorization": f"Bearer {KEY}"}
EVIL = {"Origin": "https://evil.example"}
UPKEEP = Upkeep(worker_timeout_s=4, max_attempts=3, interval_s=1)
MiB = 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class PeakRss:
    """The highest resident size of this process while the block runs (sampled)."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = _rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


@pytest.fixture(scope="module")
def rig(local_cluster: LocalCluster, cluster: LocalCluster, tmp_path_factory: Any) -> Iterator[Any]:
    """(gateway URL, worker URL): a worker with a session port and a keyed gateway."""
    tmp = tmp_path_factory.mktemp("session-port")
    mp = pytest.MonkeyPatch()
    for key, value in local_cluster.env.items():
        mp.setenv(key, value)
    engine = FakeEngine()
    port = free_port()
    options = WorkerOptions(
        "sp-worker",
        cluster.database,
        cluster.storage,
        tmp / "w",
        UPKEEP,
        0.5,
        session_port=port,
        session_token="worker-credential",
        max_sessions=4,
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    worker = threading.Thread(
        target=loop.run_until_complete, args=(serve_worker(engine, options, stop=stop),)
    )
    worker.start()
    store = PostgresJobStore(cluster.database)
    app = session_port_app(engine, options, Access(), CollectorRegistry())
    gateway_options = GatewayOptions(
        cluster.database, cluster.storage, tmp / "g", access=Access((KEY,)), upkeep=UPKEEP
    )
    gateway = build_gateway(gateway_options, store, engine.info)
    try:
        with (
            app_server(app, HttpOptions(port=port, log_level="warning")) as worker_url,
            app_server(gateway) as gateway_url,
        ):
            yield gateway_url, worker_url
    finally:
        loop.call_soon_threadsafe(stop.set)
        worker.join(30)
        store.close()
        mp.undo()


def _start(gateway: str) -> str:
    with httpx.Client(base_url=gateway, timeout=30, headers=KEYED) as http:
        deadline = time.monotonic() + 20
        while (started := http.post("/start_session", json={})).status_code == 503:
            assert time.monotonic() < deadline, started.text  # the worker registers first
            time.sleep(0.2)
    assert started.status_code == 200, started.text
    return str(started.json()["session_id"])


def test_the_session_port_answers_only_the_gateway_and_api_keys(rig: Any) -> None:
    gateway, worker = rig
    session_id = _start(gateway)  # the gateway presents the worker's credential
    with httpx.Client(base_url=worker, timeout=30) as http:
        assert http.get("/health").status_code == 200
        for method, path in (
            ("POST", "/start_session"),
            ("GET", "/session"),
            ("GET", f"/sessions/{session_id}"),
            ("POST", f"/sessions/{session_id}/connections"),
            ("GET", "/metrics"),
        ):
            for headers in ({}, KEYED):  # the gateway's own key is not the worker's
                refused = http.request(method, path, headers=headers)
                assert refused.status_code == 401, (method, path, refused.text)
        credential = {"Authorization": "Bearer worker-credential"}
        assert http.get("/metrics", headers=credential).status_code == 200
        foreign = http.get("/metrics", headers={**credential, **EVIL})
        assert foreign.status_code == 403  # no page elsewhere calls a worker's port
        preflight = http.options(
            "/start_session", headers={**EVIL, "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers
    ws = worker.replace("http://", "ws://") + "/v1/realtime/video"
    for headers in ({}, {**EVIL, "Authorization": "Bearer worker-credential"}):
        with connect(ws, additional_headers=headers) as socket, pytest.raises(ConnectionClosed):
            socket.recv(timeout=10)
        assert socket.close_code == 1008


def test_relayed_paths_stay_under_the_session_and_json_is_strict(rig: Any) -> None:
    gateway, _ = rig
    session_id = _start(gateway)
    host, port = gateway.removeprefix("http://").split(":")
    for method, path in (
        ("GET", f"/sessions/{session_id}/%2e%2e/%2e%2e/metrics"),
        ("POST", f"/sessions/{session_id}/%2E%2E/%2e%2e/start_session"),
        ("GET", f"/sessions/{session_id}/..%2f..%2fmetrics"),
        ("GET", "/sessions/%2e%2e/metrics"),
    ):
        conn = HTTPConnection(host, int(port), timeout=30)
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=KEYED)
        answer = conn.getresponse()
        assert answer.status == 404, (path, answer.read())
        conn.close()
    with httpx.Client(base_url=gateway, timeout=30, headers=KEYED) as http:
        for body in (b'{"session_id": ', b'{"a": NaN}', b"[1]"):
            stopped = http.post("/stop_session", content=body)
            assert stopped.status_code == 400, stopped.text
            assert stopped.json()["error"]["code"] == "invalid_json"
            offer = http.post(f"/sessions/{session_id}/connections", content=body)
            assert offer.status_code == 400, offer.text
        described = http.get(f"/sessions/{session_id}")
        assert described.status_code == 200  # none of it reached or harmed the session


def _chunks(total: int) -> Iterator[bytes]:
    block = b"\0" * MiB
    for _ in range(total // MiB):
        yield block


def test_uploads_name_the_gateway_and_bodies_are_cut_off_not_read_whole(rig: Any) -> None:
    gateway, _ = rig
    session_id = _start(gateway)
    with httpx.Client(base_url=gateway, timeout=60, headers=KEYED) as http:
        slot = http.post(
            f"/sessions/{session_id}/uploads",
            json={"name": "ref.png", "size": 5, "mime_type": "image/png"},
        )
        assert slot.status_code == 200, slot.text
        url = slot.json()["presigned_url"]
        assert url.startswith(gateway + f"/sessions/{session_id}/uploads/"), url
    with httpx.Client(timeout=60) as browser:  # presigned: no key, as a browser PUTs it
        put = browser.put(url, content=b"hello")
        assert put.status_code == 200, put.text
        for target, cap in ((url, UPLOAD_CAP), (f"{gateway}/stop_session", SIGNALLING_CAP)):
            with PeakRss() as rss:
                answer = browser.request(
                    "PUT" if target == url else "POST",
                    target,
                    content=_chunks(300 * MiB),  # chunked: no length to refuse up front
                    headers=KEYED,
                )
            assert answer.status_code == 413, answer.text
            assert str(cap) in answer.json()["error"]["message"]
            assert rss.peak - rss.start < 100 * MiB, (target, cap, rss.peak - rss.start)


def test_the_job_api_behind_the_gateway_refuses_cross_site_forms(rig: Any) -> None:
    gateway, _ = rig
    form = {"prompt": "a fox", "num_frames": "33"}
    with httpx.Client(base_url=gateway, timeout=30) as http:
        refused = http.post("/v1/videos", data=form, headers={**KEYED, **EVIL})
        assert refused.status_code == 403, refused.text
        assert http.get("/v1/videos", headers=KEYED).json()["data"] == []
