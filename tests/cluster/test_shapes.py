"""A gateway and a worker's session port are the same app on the same launcher as `helios
serve`: they resist the same attacks (request heads sent a byte at a time, a flood over
`--max-connections`; `tests/e2e/test_hardening.py` runs them on `helios serve`), the session
port refuses a request without the key when one is set, and the gateway serves the pages. As
processes started the README's way, and a gateway's app assembled in this process too."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.attacks import flood_is_refused, slow_heads_are_cut
from tests.live_server import app_server, free_port

from helios_serve.cluster.registry import WorkerRegistry
from helios_serve.compose.gateway import GatewayOptions, build_gateway
from helios_serve.jobs.postgres.store import PostgresJobStore
from helios_serve.web.auth import Access
from helios_serve.web.server import HttpOptions

from .conftest import FAST_UPKEEP, WORKER_FLAGS, LocalCluster, Role

pytestmark = pytest.mark.slow
KEY = "s3cret"
KEYED = {"Authorization": f"Bearer {KEY}"}
CONNECTIONS = 16
REACTOR = {"Reactor-API-Version": "1", "Reactor-API-Accept-Version": "1"}


@pytest.fixture(scope="module")
def guarded(cluster: LocalCluster) -> tuple[Role, str]:
    """A gateway and a worker with a session port, both with a key and a connection cap."""
    port = free_port()
    guards = ("--api-key", KEY, "--max-connections", str(CONNECTIONS))
    cluster.worker("w-guarded", *WORKER_FLAGS, *FAST_UPKEEP, "--session-port", str(port), *guards)
    gateway = cluster.gateway("g-guarded", *FAST_UPKEEP, *guards)
    return gateway, f"http://127.0.0.1:{port}"


def _both(check: Callable[[str], None], urls: list[str]) -> None:
    """`check` on every url at once (the head deadline is 10 s: run them side by side)."""
    errors: list[BaseException] = []

    def run(url: str) -> None:
        try:
            check(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_gateway_and_session_port_resist_slow_heads_and_floods(guarded: tuple[Role, str]) -> None:
    gateway, session_port = guarded
    urls = [gateway.url, session_port]
    _both(lambda url: slow_heads_are_cut("127.0.0.1", _port(url), within_s=25), urls)
    _both(lambda url: flood_is_refused("127.0.0.1", _port(url), CONNECTIONS), urls)


def test_the_session_port_refuses_a_request_without_the_key(guarded: tuple[Role, str]) -> None:
    gateway, session_port = guarded
    with httpx.Client(base_url=session_port, timeout=30) as http:
        assert http.get("/health").status_code == 200
        refused = http.post("/start_session", json={}, headers=REACTOR)
        assert refused.status_code == 401, refused.text
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers=KEYED).status_code == 200
    with httpx.Client(base_url=gateway.url, timeout=60) as http:  # the key goes along
        started = http.post("/start_session", json={}, headers={**REACTOR, **KEYED})
        assert started.status_code == 200, started.text
        stopped = http.post("/stop_session", json={}, headers={**REACTOR, **KEYED})
        assert stopped.status_code == 200, stopped.text


def test_a_gateways_app_in_process(
    cluster: LocalCluster, guarded: tuple[Role, str], tmp_path: Path
) -> None:
    """`build_gateway` as `helios gateway` assembles it, served here with a short head
    deadline: the same attacks, the same keys, and the pages of `helios serve`."""
    store = PostgresJobStore(cluster.database)
    try:
        info = WorkerRegistry(store.pool).model_info()
        assert info is not None
        options = GatewayOptions(cluster.database, cluster.storage, tmp_path, access=Access((KEY,)))
        http = HttpOptions(port=free_port(), max_connections=8, head_timeout_s=1)
        with app_server(build_gateway(options, store, info), http) as url:
            slow_heads_are_cut(http.host, http.port, within_s=8, sockets=4)
            flood_is_refused(http.host, http.port, 8)
            with httpx.Client(base_url=url, timeout=30) as client:
                for page in ("/", "/videos"):
                    answer = client.get(page)
                    assert answer.status_code == 200
                    assert answer.headers["content-type"].startswith("text/html")
                assert client.get("/v1/videos").status_code == 401
                assert client.get("/v1/videos", headers=KEYED).status_code == 200
    finally:
        store.close()
