"""`WS /v1/realtime/video` over real uvicorn with the `websockets` client (vLLM-Omni's own)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from tests.live_server import app_server
from websockets.asyncio.client import ClientConnection, connect

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.service import LocalEngine, describe
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.ws.endpoint import PATH

from .conftest import np_upscale


async def stream_session(ws: ClientConnection, start: dict[str, Any]) -> tuple[list[Any], bytes]:
    """Send `start`, read to session.done: (every JSON message, the concatenated fMP4)."""
    await ws.send(json.dumps(start))
    messages: list[Any] = []
    data = b""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 60)
        if isinstance(raw, bytes):
            assert messages[-1]["type"] == "video.chunk_metadata"
            assert len(raw) == messages[-1]["byte_length"]
            data += raw
            continue
        messages.append(json.loads(raw))
        if messages[-1]["type"] in ("session.done", "error"):
            return messages, data


def test_tiny_engine_streams_a_decodable_fmp4(
    tiny_model: Callable[[str], LoadedModel], tmp_path: Path
) -> None:
    model = tiny_model("tiny")
    engine = LocalEngine(model, describe(model, "helios"))
    parts = build_parts(engine, tmp_path)
    app = build_app(
        engine, jobs=JobApi(parts, ApiConfig()), sessions=Sessions(RealtimeConfig(), np_upscale)
    )
    start = {
        "type": "session.start",
        "model": engine.info.name,
        "prompt": "a lighthouse at dusk",
        "format": "m4s",
        "width": 64,
        "height": 64,
        "num_frames": 66,
        "seed": 3,
        "extra_params": {"pyramid_num_inference_steps_list": [1, 1, 1]},
    }

    async def main(url: str) -> tuple[list[Any], bytes]:
        async with connect(url.replace("http", "ws") + PATH, max_size=None) as ws:
            return await stream_session(ws, start)

    try:
        with app_server(app) as url:
            messages, data = asyncio.run(main(url))
    finally:
        asyncio.run(engine.close())
        parts.store.close()
    assert messages[0]["type"] == "video.start", messages
    assert messages[0]["config"]["num_chunks"] == 2
    assert [m["type"] for m in messages[1:]] == ["video.chunk_metadata"] * 2 + ["session.done"]
    assert messages[-1]["chunks"] == 2
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 66
    assert frames[0].shape == (64, 64, 3)
    assert max(float(f.std()) for f in frames) > 5  # noise from random weights, not blank


def test_client_that_vanishes_gives_its_slot_back() -> None:
    engine = FakeEngine(FakeEngineConfig(step_delay_s=0.02))
    app = build_app(engine, sessions=Sessions(RealtimeConfig(max_sessions=1), np_upscale))
    slots = app.state.slots

    async def vanish(url: str) -> None:
        async with connect(url.replace("http", "ws") + PATH) as ws:
            await ws.send(json.dumps({"type": "session.start", "prompt": "x", "num_frames": 3300}))
            assert json.loads(await ws.recv())["type"] == "video.start"
            await ws.recv()  # the first chunk's metadata: generation is under way

    async def next_client(url: str) -> list[Any]:
        async with connect(url.replace("http", "ws") + PATH) as ws:
            return (await stream_session(ws, {"type": "session.start", "prompt": "y"}))[0]

    with app_server(app) as url:
        asyncio.run(vanish(url))
        deadline = time.monotonic() + 5
        while slots.in_use and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slots.in_use == 0
        assert asyncio.run(next_client(url))[-1]["type"] == "session.done"


@pytest.mark.parametrize(
    ("raw", "close_code"),
    [("not json", 1007), (json.dumps({"type": "session.start", "prompt": ""}), 1008)],
)
def test_bad_start_over_a_real_socket_is_an_error_then_close(raw: str, close_code: int) -> None:
    app = build_app(FakeEngine(), sessions=Sessions(RealtimeConfig(), np_upscale))

    async def main(url: str) -> None:
        async with connect(url.replace("http", "ws") + PATH) as ws:
            await ws.send(raw)
            assert json.loads(await ws.recv())["type"] == "error"
            await ws.wait_closed()
            assert ws.close_code == close_code

    with app_server(app) as url:
        asyncio.run(main(url))
