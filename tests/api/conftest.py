"""A one-route app around `read_create_request`, the served-model variants, and test media."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Query, Request
from PIL import Image
from pydantic import BaseModel, Field
from tests.live_server import app_server, free_port

from helios_serve.api.videos.limits import RequestLimits
from helios_serve.api.videos.params import VideoCreateRequest
from helios_serve.api.videos.resolve import resolve_spec_fields
from helios_serve.api.videos.upload import read_create_request
from helios_serve.core.spec import ModelInfo, settings_to_json
from helios_serve.core.types import Variant
from helios_serve.errors import (
    CheckpointError,
    HeliosError,
    InvalidInputError,
    StreamCancelledError,
)
from helios_serve.media.encode import Mp4Writer
from helios_serve.web.errors import install_error_handlers
from helios_serve.web.responses import CompactJSONResponse
from helios_serve.web.server import HttpOptions

SEED_CLIENTS = Path(
    os.environ.get("HELIOS_SEED_CLIENTS")
    or Path(__file__).resolve().parents[3] / "shared" / "seeds" / "clients"
)
"""The seed's client scripts, used unchanged (CI checks the repo out with shared/ beside it)."""


def model_info(variant: Variant, name: str | None = None) -> ModelInfo:
    label = variant.value.title()
    return ModelInfo(
        name=name or f"BestWishYsh/Helios-{label}",
        variant=variant,
        is_tiny=False,
        device="cpu",
        default_width=640,
        default_height=384,
        default_max_sequence_length=512,
        pyramid_stages=1 if variant is Variant.BASE else 3,
        aliases=(f"helios-{variant.value}",),
    )


BASE = model_info(Variant.BASE)
MID = model_info(Variant.MID)
DISTILLED = model_info(Variant.DISTILLED)


def summary(req: VideoCreateRequest, model: ModelInfo) -> dict[str, Any]:
    """What the test route answers: the parsed request and the resolved settings."""
    resolved = resolve_spec_fields(req, model, seed_source=lambda: 7)
    ref = req.reference
    return {
        "id": "video_test",
        "object": "video",
        "model": req.model,
        "width": resolved.width,
        "height": resolved.height,
        "output_size": None if resolved.output_size is None else list(resolved.output_size),
        "num_frames": resolved.num_frames,
        "delivered_frames": resolved.delivered_frames,
        "fps": resolved.fps,
        "seed": resolved.seed,
        "mode": resolved.mode.value,
        "settings": settings_to_json(resolved.settings),
        "extra": req.extra.model_dump(exclude_none=True),
        "reference": None if ref is None else {"kind": ref.kind, "frames": ref.frames},
    }


class RemixBody(BaseModel):
    prompt: str
    strength: float = Field(0.5, le=1.0)


def make_app(model: ModelInfo = BASE, limits: RequestLimits | None = None) -> FastAPI:
    app = FastAPI(default_response_class=CompactJSONResponse)
    install_error_handlers(app)
    app.state.parsed = []

    @app.post("/v1/videos")
    async def create(request: Request) -> CompactJSONResponse:
        req = await read_create_request(request, model, limits or RequestLimits())
        app.state.parsed.append(req)
        return CompactJSONResponse(summary(req, model))

    @app.get("/v1/videos/{video_id}")
    async def retrieve(video_id: str, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
        return {"id": video_id, "status": "completed", "progress": 100, "limit": limit}

    @app.post("/remix")
    async def remix(body: RemixBody) -> dict[str, Any]:
        return body.model_dump()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    @app.get("/domain/{kind}")
    async def domain(kind: str) -> None:
        errors: dict[str, HeliosError] = {
            "invalid": InvalidInputError("bad frames", param="frames"),
            "cancelled": StreamCancelledError("stream cancelled"),
            "checkpoint": CheckpointError("weights missing"),
            "plain": HeliosError("internal trouble"),
        }
        raise errors[kind]

    return app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client_for() -> Callable[..., httpx.AsyncClient]:
    """`client_for(model, limits)` → an httpx client driving the app in-process."""

    def make(model: ModelInfo = BASE, limits: RequestLimits | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(make_app(model, limits), raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10)

    return make


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(make_app(BASE), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as c:
        yield c


# ----------------------------------------------------------------------------- media


def png_bytes(width: int = 64, height: int = 48, noisy: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    if noisy:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        pixels = np.full((height, width, 3), 120, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def mp4_bytes(tmp_path: Path, frames: int, width: int = 64, height: int = 48) -> bytes:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    path = tmp_path / f"clip-{frames}.mp4"
    with Mp4Writer(path, width, height, fps=24) as writer:
        writer.write(data)
    return path.read_bytes()


HLS_PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
TEXT_FILE = b"just some words, not a picture\n"


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("api-media")
    good_png = png_bytes(64, 48, noisy=True)
    long_mp4 = mp4_bytes(tmp, 40)
    return {
        "png": png_bytes(),
        "truncated_png": good_png[: len(good_png) // 2],
        "bomb_png": bomb_png(),
        "mp4": long_mp4,
        "short_mp4": mp4_bytes(tmp, 10),
        "truncated_mp4": long_mp4[: len(long_mp4) // 2],
        "text": TEXT_FILE,
        "hls": HLS_PLAYLIST,
    }


# ----------------------------------------------------------------------------- live server


class AppUnderTest:
    """The test app under the production launcher (`tests.live_server.app_server`)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self._serving = app_server(app, HttpOptions(port=self.port, log_level="warning"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AppUnderTest:
        self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(None, None, None)


@pytest.fixture
def live_server() -> Callable[..., AppUnderTest]:
    """`with live_server(model, limits) as server:` → a running uvicorn on `server.url`."""

    def make(model: ModelInfo = BASE, limits: RequestLimits | None = None) -> AppUnderTest:
        return AppUnderTest(make_app(model, limits))

    return make
