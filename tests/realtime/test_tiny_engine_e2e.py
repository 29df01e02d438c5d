"""The same WebRTC path on the real tiny pipeline (LocalEngine, one worker thread, CPU)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.live_server import app_server
from tests.reactor_client import ReactorClient

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.core.settings import PRESETS
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.service import LocalEngine, describe
from helios_serve.realtime.config import RealtimeConfig

from .conftest import np_upscale


@pytest.fixture(scope="module")
def tiny_server(
    tiny_model: Callable[[str], LoadedModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    model = tiny_model("tiny")
    engine = LocalEngine(model, describe(model, "helios"))
    settings = PRESETS[model.variant].with_overrides(
        pyramid_steps=(1, 1, 1), max_sequence_length=16
    )
    config = RealtimeConfig(
        width=64, height=64, settings=settings, emission_fps=60, idle_timeout_s=30
    )
    parts = build_parts(engine, Path(tmp_path_factory.mktemp("tiny-rt")))
    app = build_app(engine, jobs=JobApi(parts, ApiConfig()), sessions=Sessions(config, np_upscale))
    with app_server(app) as url:
        yield url
    asyncio.run(engine.close())
    parts.store.close()


def test_tiny_engine_streams_chunks_over_webrtc(tiny_server: str) -> None:
    async def main() -> None:
        c = ReactorClient(tiny_server)
        await c.connect()
        try:
            c.send("set_seed", {"seed": 3})
            c.send("set_prompt", {"prompt": "a lighthouse at dusk"})
            c.send("schedule_prompt", {"prompt": "waves hit the lighthouse", "chunk": 1})
            c.send("start")
            frames = []
            while len(c.of("chunk_complete")) < 2:
                frames.append(await c.frame())
            done = c.of("chunk_complete")
            assert [d["chunk_index"] for d in done[:2]] == [0, 1]
            assert done[0]["frames_emitted"] == 33
            assert done[1]["active_prompt"] == "waves hit the lighthouse"
            frames += await c.frames_for(33 / 60 + 0.3)
            assert all(f.shape == (64, 64, 3) for f in frames)
            # Tiny random weights give noise: it must at least differ from the black placeholder.
            assert max(float(f.std()) for f in frames) > 5
        finally:
            await c.close()

    asyncio.run(main())
