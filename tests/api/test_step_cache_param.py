"""`extra_params.step_cache` on `POST /v1/videos`, and the video object that reports it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from helios_serve.api.videos.protocol import video_object
from helios_serve.core.settings import SamplingSettings
from helios_serve.core.step_cache import StepCacheSettings
from helios_serve.jobs.models import GenerationSpec, Job

from .conftest import BASE, DISTILLED, MID
from .test_errors import assert_envelope

pytestmark = pytest.mark.anyio

CACHING_BASE = replace(BASE, step_cache_available=True)
CACHING_MID = replace(MID, step_cache_available=True)
DEFAULTS = StepCacheSettings().to_json()


async def create(client_for: Any, model: Any, **kwargs: Any) -> Any:
    async with client_for(model) as client:
        return await client.post("/v1/videos", **kwargs)


async def test_json_true_gets_the_defaults(client_for: Any) -> None:
    body = {"prompt": "p", "extra_params": {"step_cache": True}}
    resp = await create(client_for, CACHING_BASE, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["settings"]["step_cache"] == DEFAULTS


async def test_an_object_overrides_the_defaults_key_by_key(client_for: Any) -> None:
    extra = json.dumps({"step_cache": {"residual_diff_threshold": 0.1, "max_warmup_steps": 6}})
    resp = await create(client_for, CACHING_MID, json={"prompt": "p", "extra_params": extra})
    assert resp.status_code == 200, resp.text
    got = resp.json()["settings"]["step_cache"]
    assert got == {**DEFAULTS, "residual_diff_threshold": 0.1, "max_warmup_steps": 6}


async def test_bracket_form_field_from_the_openai_sdk(client_for: Any) -> None:
    files = [("prompt", (None, "p")), ("extra_params[step_cache]", (None, "true"))]
    resp = await create(client_for, CACHING_BASE, files=files)
    assert resp.status_code == 200, resp.text
    assert resp.json()["settings"]["step_cache"] == DEFAULTS


async def test_server_default_and_opting_out(client_for: Any) -> None:
    server = StepCacheSettings(residual_diff_threshold=0.12)
    model = replace(CACHING_BASE, step_cache_default=server)
    bare = await create(client_for, model, json={"prompt": "p"})
    assert bare.json()["settings"]["step_cache"] == server.to_json()
    off = await create(
        client_for, model, json={"prompt": "p", "extra_params": {"step_cache": False}}
    )
    assert "step_cache" not in off.json()["settings"]


@pytest.mark.parametrize(
    ("model", "value", "param", "code"),
    [
        (CACHING_BASE, {"Fn": 1}, "extra_params.step_cache.Fn", "unknown_parameter"),
        (CACHING_BASE, {"max_warmup_steps": -2}, "extra_params.step_cache.max_warmup_steps", None),
        (CACHING_BASE, "yes", "extra_params.step_cache", None),
        (DISTILLED, True, "extra_params.step_cache", "unsupported_parameter"),
        (BASE, True, "extra_params.step_cache", "unsupported_parameter"),
    ],
)
async def test_bad_values_are_400s_naming_the_key(
    client_for: Any, model: Any, value: Any, param: str, code: str | None
) -> None:
    resp = await create(
        client_for, model, json={"prompt": "p", "extra_params": {"step_cache": value}}
    )
    error = assert_envelope(resp, 400, code)
    assert error["param"] == param


async def test_top_level_step_cache_asks_to_move_it(client_for: Any) -> None:
    resp = await create(client_for, CACHING_BASE, json={"prompt": "p", "step_cache": True})
    error = assert_envelope(resp, 400, "unknown_parameter")
    assert "inside extra_params" in str(error["message"])


def test_video_object_reports_the_step_cache() -> None:
    def video(settings: SamplingSettings) -> dict[str, Any]:
        spec = GenerationSpec(
            prompt="p",
            negative_prompt="",
            width=640,
            height=384,
            num_frames=33,
            fps=24,
            seed=1,
            settings=settings,
        )
        return video_object(Job.new("helios-base", spec, job_id="video_" + "a" * 32))

    cache = StepCacheSettings(max_cached_steps=30)
    assert video(SamplingSettings(step_cache=cache))["step_cache"] == cache.to_json()
    assert video(SamplingSettings())["step_cache"] is None


def test_models_video_defaults_show_the_servers_step_cache() -> None:
    from helios_serve.api.videos.defaults import video_defaults
    from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS

    server = StepCacheSettings(residual_diff_threshold=0.12)
    served = replace(CACHING_MID, step_cache_default=server)
    assert video_defaults(served, DEFAULT_REQUEST_LIMITS)["preset"]["step_cache"] == (
        server.to_json()
    )
    assert video_defaults(CACHING_BASE, DEFAULT_REQUEST_LIMITS)["preset"]["step_cache"] is None
    assert "step_cache" not in video_defaults(DISTILLED, DEFAULT_REQUEST_LIMITS)["preset"]
