"""Reactor's Python client (`reactor-sdk` 1.13, unmodified) over a network that drops: its
`reconnect()` after the network comes back keeps the session, its prompt and its stream as long
as the client was away for less than the session's idle timeout; longer, and the session has
ended and its slot is free.

The client runs in its own network namespace (`netns.py`); the drop discards every packet both
ways while the interfaces stay up. The server runs with `--session-idle-timeout 12`, so the 10 s
drop is both the "10 s" case and one just under the timeout (the default, 30 s, would only make
the test slower), and a 15 s drop is over it.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.live_server import LiveServer, live_server
from tests.reactor_client import HEADERS

from . import netns

pytest.importorskip("reactor_sdk", reason="reactor-sdk==1.13.0 is a dev dependency")
WHY_NOT = netns.unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]

IDLE_TIMEOUT_S = 12.0
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 180.0
"""Per wait: the tiny CPU engine is slower than real time, and the machine may be busy."""


class DropClient:
    """`sdk_drop_client.py` in the namespace; its events as they come."""

    def __init__(self, net: netns.Netns, url: str) -> None:
        self.proc = net.popen(
            [sys.executable, "-m", "tests.realtime.sdk_drop_client", url],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._new: queue.Queue[None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("{"):
                self.events.append(json.loads(line))
            self._new.put(None)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def until(self, check: Callable[[], Any], what: str, within: float = WAIT_S) -> Any:
        deadline = time.monotonic() + within
        while not (value := check()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                tail = "".join(self.lines[-40:])
                raise AssertionError(f"timed out waiting for {what}; the client said:\n{tail}")
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=0.5)
        return value

    def seen(self, event: str, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if e["event"] == event]

    def messages(self, kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [e["data"] for e in self.seen("message", since) if e["type"] == kind]

    def frames(self) -> int:
        counts = [e["count"] for e in self.seen("frames")]
        return counts[-1] if counts else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def net() -> Iterator[netns.Netns]:
    with netns.Netns() as made:
        yield made


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Reachable from the namespace (all addresses), one session slot, 12 s idle timeout."""
    data_dir = tmp_path_factory.mktemp("reconnect") / "data"
    timeout = str(IDLE_TIMEOUT_S)
    with live_server(data_dir, "--host", "0.0.0.0", "--session-idle-timeout", timeout) as srv:
        yield srv


def _sessions_log(server: LiveServer) -> str:
    return "".join(line for line in server.log if "session" in line and "HTTP/1.1" not in line)


RECONNECT_ATTEMPTS = 3


def _reconnect(client: DropClient) -> dict[str, Any]:
    """`reconnect()`, retried on the SDK's transport error, as an app retries a network error.

    The SDK's HTTP client keeps idle keep-alive connections (one or two, as many as it had
    requests in flight) for 90 s; the server closes an idle one after 5 s (uvicorn's default),
    and during the drop that close was lost. After the drop each pooled connection is dead: a
    request on one fails at the client ("error sending request", never reaching the server) and
    the connection leaves the pool, so a bounded retry reaches the server on a fresh one.
    """
    for _ in range(RECONNECT_ATTEMPTS):
        mark = len(client.events)
        client.send("reconnect")

        def answered(since: int = mark) -> dict[str, Any] | None:
            outcomes = client.seen("reconnected", since) + client.seen("reconnect_failed", since)
            return outcomes[0] if outcomes else None

        back: dict[str, Any] = client.until(answered, "reconnect()")
        if back["event"] == "reconnected" or "NETWORK_ERROR" not in str(back.get("error")):
            return back
    return back


def _away(net: netns.Netns, seconds: float) -> None:
    net.drop()
    try:
        time.sleep(seconds)
    finally:
        net.restore()


def test_reconnect_after_a_drop_keeps_the_session_until_the_idle_timeout(
    net: netns.Netns, server: LiveServer
) -> None:
    client = DropClient(net, f"http://{net.host_ip}:{server.port}")
    try:
        session_id = client.until(
            lambda: next((e["session_id"] for e in client.seen("connected")), None), "connect"
        )
        client.until(lambda: len(client.messages("chunk_complete")) >= 1, "a first chunk")
        client.until(lambda: client.frames() >= 30, "frames")

        # 10 s away (just under the 12 s idle timeout), then reconnect(): the same session
        _away(net, 10.0)
        mark, frames = len(client.events), client.frames()
        shown = max(int(c["chunk_index"]) for c in client.messages("chunk_complete"))
        back = _reconnect(client)
        assert back["event"] == "reconnected", (back, _sessions_log(server), client.lines[-20:])
        assert back["session_id"] == session_id
        # ...its prompt and stream: the state it announces, chunks after the ones before the
        # drop (not a new stream from chunk 0), and frames on the new peer
        state = client.until(lambda: next(iter(client.messages("state", mark)), None), "state")
        assert state["current_prompt"].startswith("a lighthouse")
        assert state["started"] is True
        assert int(state["current_chunk"]) > shown
        later = client.until(
            lambda: [
                c
                for c in client.messages("chunk_complete", mark)
                if int(c["chunk_index"]) > shown + 1
            ],
            "a chunk after the reconnect",
        )
        assert later[0]["active_prompt"].startswith("a lighthouse")
        client.until(lambda: client.frames() >= frames + 30, "frames after the reconnect")

        # away longer than the idle timeout: the session has ended, its slot is free
        _away(net, IDLE_TIMEOUT_S + 3)
        gone = _reconnect(client)
        assert gone["event"] == "reconnect_failed", gone
        assert "NETWORK_ERROR" not in gone["error"], gone  # refused by the server, not the network
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as http:
            assert http.get("/session", params={"session_id": session_id}).status_code == 404
            assert http.post("/start_session", json={}).status_code == 200
            http.post("/stop_session", json={})
        closed = f"session {session_id} closed: the client was silent for 12 s"
        client.until(lambda: any(closed in line for line in server.log), "the close", 60)
    finally:
        client.stop()
