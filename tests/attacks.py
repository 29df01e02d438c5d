"""The attacks every process shape must resist alike (`helios serve`, a gateway, a worker's
session port): request heads sent one byte at a time (slowloris), and a flood of connections
over `--max-connections`. Each helper asserts the server stays answerable."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the server answered (a 408) or hung up; False while it still waits."""
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return False
    except OSError:
        pass
    finally:
        sock.setblocking(True)
    return True


def slow_heads_are_cut(host: str, port: int, *, within_s: float, sockets: int) -> None:
    """`sockets` connections (fewer than the server's connection cap) that trickle a header
    byte a second are closed within `within_s`, and `/health` answers 200 all along."""
    socks = []
    for _ in range(sockets):
        sock = socket.create_connection((host, port), timeout=30)
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        socks.append(sock)
    health: list[int] = []
    closed = 0
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            time.sleep(min(1.0, within_s / 10))
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as http:
                health.append(http.get("/health").status_code)
            for sock in socks:
                with contextlib.suppress(OSError):  # already closed by the server
                    sock.sendall(b"X")
            closed = sum(1 for s in socks if _closed_by_peer(s))
            if closed == len(socks):
                break
    finally:
        for sock in socks:
            sock.close()
    assert closed == len(socks), f"{closed} of {len(socks)} slow connections closed"
    assert set(health) == {200}, health


def flood_is_refused(host: str, port: int, max_connections: int) -> None:
    """With `max_connections` connections open, a request is refused with 503 at once (rather
    than the server running out of descriptors); once they close, it is answered again."""
    socks = [socket.create_connection((host, port), timeout=30) for _ in range(max_connections)]
    try:
        time.sleep(0.2)  # let the server register every one
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as http:
            refused = http.get("/health")
    finally:
        for sock in socks:
            sock.close()
    assert refused.status_code == 503, refused.text
    deadline = time.monotonic() + 15
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as http:
        while (status := http.get("/health").status_code) != 200:
            assert time.monotonic() < deadline, f"/health still answers {status}"
            time.sleep(0.1)
