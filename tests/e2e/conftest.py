"""A real `helios serve` process on loopback, on the tiny checkpoints, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from helios_serve.bench.realtime_client import free_port

SEED_CLIENTS = Path(
    os.environ.get("HELIOS_SEED_CLIENTS")
    or Path(__file__).resolve().parents[3] / "shared" / "seeds" / "clients"
)
"""The seed's client scripts, used unchanged (CI checks the repo out with shared/ beside it)."""

needs_seed_clients = pytest.mark.skipif(
    not SEED_CLIENTS.is_dir(), reason=f"seed clients not found at {SEED_CLIENTS}"
)


@dataclass
class LiveServer:
    """`helios serve` in a subprocess; restartable on the same data directory and port."""

    model: str
    served_name: str
    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        cmd = [
            sys.executable,
            "-m",
            "helios_serve.cli",
            "serve",
            "--model",
            self.model,
            "--served-model-name",
            self.served_name,
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.log[-40:]))

    def _pump(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line)
            if "helios-serve ready" in line:
                ready.set()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

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


def live_server(model: str, served_name: str, tmp: Path, *extra: str) -> Iterator[LiveServer]:
    server = LiveServer(model, served_name, tmp, list(extra))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def distilled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(
        "tiny", "BestWishYsh/Helios-Distilled", tmp_path_factory.mktemp("distilled")
    )
