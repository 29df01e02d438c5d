"""`helios serve` on the embedded default, under a real uvicorn on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from helios_serve.bench.realtime_client import free_port


def test_serve_answers_health_and_models_then_stops_on_sigterm(data_dir: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helios_serve.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "helios-serve ready" in line or proc.poll() is not None:
                break
        assert any(f"http://127.0.0.1:{port}" in line for line in lines), "".join(lines)
        assert any("output is noise" in line for line in lines), "tiny model must say so"
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health", timeout=10).json()["status"] == "ok"
        ready = httpx.get(f"{base}/ready", timeout=10).json()
        assert ready["variant"] == "distilled"
        models = httpx.get(f"{base}/v1/models", timeout=10).json()
        assert models["data"][0]["id"] == "tiny"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
