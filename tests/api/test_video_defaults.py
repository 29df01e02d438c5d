"""`video_defaults` in `/v1/models`: what the videos page fills its form from, and the pages
themselves loading without a key while everything else still needs one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient

from helios_serve.api.app import ApiConfig
from helios_serve.api.videos.defaults import video_defaults
from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS
from helios_serve.api.videos.params import VideoCreateRequest
from helios_serve.api.videos.resolve import resolve_spec_fields
from helios_serve.api.videos.sizes import check_size
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.core.spec import ModelInfo, delivered_frames
from helios_serve.core.types import Variant
from helios_serve.engine.fake import FakeEngine
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.web.auth import Access

from .conftest import BASE, DISTILLED, MID, model_info


def test_each_variant_describes_its_own_knobs() -> None:
    base = video_defaults(BASE, DEFAULT_REQUEST_LIMITS)
    assert base["preset"] == {
        "guidance_scale": 5.0,
        "use_cfg_zero_star": False,
        "negative_prompt": "",
        "num_inference_steps": 50,
    }
    assert base["size_multiple"] == 16
    mid = video_defaults(MID, DEFAULT_REQUEST_LIMITS)["preset"]
    assert mid["pyramid_steps"] == [20, 20, 20]
    assert mid["use_cfg_zero_star"] is True
    assert "num_inference_steps" not in mid
    assert "amplify_first_chunk" not in mid  # Distilled only: the API refuses it elsewhere
    distilled = video_defaults(DISTILLED, DEFAULT_REQUEST_LIMITS)
    assert distilled["preset"]["pyramid_steps"] == [2, 2, 2]
    assert distilled["preset"]["amplify_first_chunk"] is True
    assert distilled["preset"]["guidance_scale"] == 1.0
    assert distilled["size_multiple"] == 64


@pytest.mark.parametrize("model", [BASE, MID, DISTILLED], ids=lambda m: m.variant.value)
def test_defaults_are_what_a_bare_request_gets(model: ModelInfo) -> None:
    """The page sends only what differs from these, so they must equal the server's own."""
    d = video_defaults(model, DEFAULT_REQUEST_LIMITS)
    resolved = resolve_spec_fields(VideoCreateRequest(prompt="p"), model, seed_source=lambda: 1)
    settings = resolved.settings
    assert d["size"] == resolved.size
    assert (d["num_frames"], d["fps"]) == (resolved.num_frames, resolved.fps)
    assert delivered_frames(d["num_frames"]) == resolved.delivered_frames
    preset = d["preset"]
    assert preset["guidance_scale"] == settings.guidance_scale
    assert preset["use_cfg_zero_star"] == settings.use_cfg_zero_star
    if model.variant is Variant.BASE:
        assert preset["num_inference_steps"] == settings.num_inference_steps
    else:
        assert preset["pyramid_steps"] == list(settings.pyramid_steps)
    if model.variant is Variant.DISTILLED:
        assert preset["amplify_first_chunk"] == settings.amplify_first_chunk


def test_sizes_put_the_trained_size_first_and_are_all_accepted() -> None:
    tiny = model_info(Variant.DISTILLED)
    tiny = type(tiny)(**{**tiny.__dict__, "default_width": 192, "default_height": 128})
    d = video_defaults(tiny, DEFAULT_REQUEST_LIMITS)
    assert d["sizes"][:2] == ["640x384", "192x128"]
    assert d["trained_size"] == "640x384"
    assert len(d["sizes"]) == len(set(d["sizes"]))
    for model in (BASE, tiny):
        for size in video_defaults(model, DEFAULT_REQUEST_LIMITS)["sizes"]:
            check_size(size, None, None, model, DEFAULT_REQUEST_LIMITS.max_side)  # no 400


def test_two_stage_pyramid_gets_one_step_count_per_stage() -> None:
    two = model_info(Variant.MID)
    two = type(two)(**{**two.__dict__, "pyramid_stages": 2})
    assert video_defaults(two, DEFAULT_REQUEST_LIMITS)["preset"]["pyramid_steps"] == [20, 20]


def _no_sr(frames: npt.NDArray[np.uint8], scale: int) -> npt.NDArray[np.uint8]:
    return frames


def _app(tmp_path: Path, keys: tuple[str, ...] = ()) -> TestClient:
    """The app as `helios serve` composes it: the job API plus the realtime routes and pages."""
    engine = FakeEngine()
    app = build_app(
        engine,
        jobs=JobApi(build_parts(engine, tmp_path, idle_poll_s=0.05), ApiConfig()),
        sessions=Sessions(RealtimeConfig(), _no_sr),
        access=Access(keys),
    )
    return TestClient(app)


def test_models_carry_video_defaults(tmp_path: Path) -> None:
    with _app(tmp_path) as client:
        models = client.get("/v1/models").json()["data"]
    assert models
    for model in models:
        assert model["video_defaults"]["variant"] == model["variant"]
        assert model["video_defaults"]["frames_per_chunk"] == 33


def test_pages_load_without_a_key_and_nothing_else_does(tmp_path: Path) -> None:
    with _app(tmp_path, keys=("k",)) as client:
        for path in ("/", "/videos", "/static/videos.js", "/static/videos.css"):
            response = client.get(path)
            assert response.status_code == 200, path
        assert "/static/videos.js" in client.get("/videos").text
        assert 'href="/videos"' in client.get("/").text  # the playground links to the page
        assert 'href="/"' in client.get("/videos").text
        # Only GETs of the pages are open; the API behind them is not.
        assert client.post("/videos").status_code == 401
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/videos").status_code == 401
        ok = client.get("/v1/models", headers={"Authorization": "Bearer k"})
        assert ok.status_code == 200
