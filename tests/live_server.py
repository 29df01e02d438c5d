"""The one way every suite starts a real server: `helios serve` as a subprocess on a free
loopback port, ready when it prints its ready line, restartable on the same data directory and
port (`LiveServer`); or an app of this process under the production launcher (`app_server`:
`web.server`'s one uvicorn configuration, the same hardening as every process shape)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from helios_serve.web.server import HttpOptions, Server, uvicorn_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def app_server(app: Any, http: HttpOptions | None = None) -> Iterator[str]:
    """`app` served in a background thread by the launcher every process uses (on a free
    loopback port unless `http` says otherwise); yields its base URL."""
    http = http or HttpOptions(port=free_port(), log_level="warning")
    server = Server(uvicorn_config(app, http), own_signals=False)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{http.host}:{http.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


READY_LINE = "helios-serve ready"
START_TIMEOUT_S = 300.0
"""Loading the tiny checkpoints takes seconds alone; CI runs several suites side by side."""


@dataclass
class LiveServer:
    """`helios serve --model MODEL --data-dir DATA_DIR --port PORT EXTRA_ARGS…` (no `--model`
    when `model` is None: the embedded default, as the README's first command runs it)."""

    data_dir: Path
    model: str | None = "tiny"
    served_name: str | None = None
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        model = ["--model", self.model] if self.model else []
        named = ["--served-model-name", self.served_name] if self.served_name else []
        return [
            sys.executable,
            "-m",
            "helios_serve.cli",
            "serve",
            *model,
            *named,
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            *self.extra_args,
        ]

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start and wait for the ready line; a server that exits or never gets ready raises
        with the tail of its log."""
        self.log.clear()
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.kill()
            raise RuntimeError("helios serve did not become ready:\n" + self.tail())

    def _pump(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line)
            if READY_LINE in line:
                ready.set()
        ready.set()  # the process ended: let start() see it instead of waiting out the timeout

    def tail(self, lines: int = 60) -> str:
        return "".join(self.log[-lines:])

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """A graceful stop; returns the exit code (a server that does not stop is killed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def wait_done(self, video_id: str, timeout: float = 600) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        with self.client() as http:
            while time.monotonic() < deadline:
                video: dict[str, object] = http.get(f"/v1/videos/{video_id}").json()
                if video["status"] in ("completed", "failed"):
                    return video
                time.sleep(0.3)
        raise TimeoutError(f"{video_id} did not finish")


@contextmanager
def live_server(
    data_dir: Path,
    *extra: str,
    model: str = "tiny",
    served_name: str | None = None,
    graceful: bool = True,
) -> Iterator[LiveServer]:
    """A started server; at the end stopped with SIGTERM (killed if it will not stop), or
    killed at once when `graceful` is off (tests that already checked what they wanted)."""
    server = LiveServer(data_dir, model, served_name, list(extra))
    server.start()
    try:
        yield server
    finally:
        if not graceful:
            server.kill()
        else:
            # stop() kills a server that will not stop; the test's assertions already ran
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.stop()
