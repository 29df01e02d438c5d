"""`helios serve` on the embedded default, under a real uvicorn on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.live_server import LiveServer


def test_serve_answers_health_and_models_then_stops_on_sigterm(data_dir: Path) -> None:
    server = LiveServer(data_dir, model=None)  # the embedded default
    server.start()
    try:
        lines = server.log
        assert any(server.url in line for line in lines), server.tail()
        assert any("output is noise" in line for line in lines), "tiny model must say so"
        assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
        ready = httpx.get(f"{server.url}/ready", timeout=10).json()
        assert ready["variant"] == "distilled"
        models = httpx.get(f"{server.url}/v1/models", timeout=10).json()
        assert models["data"][0]["id"] == "tiny"
    finally:
        assert server.stop() == 0
