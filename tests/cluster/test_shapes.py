"""A gateway and a worker's session port are the same app on the same launcher as `helios
serve`: they resist the same attacks (request heads sent a byte at a time, a flood over
`--max-connections`; `tests/e2e/test_hardening.py` runs them on `helios serve`), the session
port refuses a request without the key when one is set, and relays it with the key. As processes
started the README's way (`test_in_process.py` assembles a gateway in this process)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from tests.attacks import flood_is_refused, slow_heads_are_cut
from tests.live_server import free_port

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
    _both(lambda url: slow_heads_are_cut("127.0.0.1", _port(url), within_s=25, sockets=8), urls)
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
