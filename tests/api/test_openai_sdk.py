"""What the real `openai` SDK sends for `videos.create`, captured and fed to our parser."""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest

from .conftest import DISTILLED, MID, png_bytes

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.anyio

VIDEO = {
    "id": "video_x",
    "object": "video",
    "model": "m",
    "status": "queued",
    "progress": 0,
    "created_at": 0,
    "seconds": "4",
    "size": "640x384",
}


def sdk_request(**kwargs: Any) -> httpx.Request:
    """Run `client.videos.create(**kwargs)` against a mock transport; return what it sent."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        sent.append(request)
        return httpx.Response(200, json=VIDEO)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = openai.OpenAI(base_url="http://sdk.test/v1", api_key="k", http_client=http)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns that Sora is being retired
        client.videos.create(**kwargs)
    assert len(sent) == 1
    return sent[0]


async def replay(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    headers = {"content-type": request.headers["content-type"]}
    return await client.post("/v1/videos", content=request.content, headers=headers)


DISTILLED_EXTRA = {
    "is_enable_stage2": True,
    "pyramid_num_stages": 3,
    "pyramid_num_inference_steps_list": [2, 2, 2],
    "is_amplify_first_chunk": True,
}


async def test_sdk_dict_extra_params_become_bracket_fields(client_for: Any) -> None:
    request = sdk_request(
        prompt="a lake at dawn",
        model="BestWishYsh/Helios-Distilled",
        extra_body={"extra_params": {**DISTILLED_EXTRA, "image_noise_sigma_min": 0.1}},
    )
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert b'name="extra_params[pyramid_num_inference_steps_list][]"' in request.content
    async with client_for(DISTILLED) as client:
        resp = await replay(client, request)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["extra"] == {**DISTILLED_EXTRA, "image_noise_sigma_min": 0.1}
    assert body["settings"]["pyramid_steps"] == [2, 2, 2]
    assert body["settings"]["image_noise_sigma"][0] == 0.1


async def test_sdk_single_item_list_stays_a_list(client_for: Any) -> None:
    request = sdk_request(
        prompt="p",
        model="BestWishYsh/Helios-Mid",
        extra_body={"extra_params": {"history_sizes": [16, 2, 1], "use_zero_init": False}},
    )
    async with client_for(MID) as client:
        resp = await replay(client, request)
    assert resp.status_code == 200, resp.text
    assert resp.json()["extra"] == {"history_sizes": [16, 2, 1], "use_zero_init": False}


async def test_sdk_json_string_extra_params(client_for: Any) -> None:
    request = sdk_request(
        prompt="a lake at dawn",
        model="BestWishYsh/Helios-Distilled",
        seconds="8",
        size="640x384",
        extra_body={"extra_params": json.dumps(DISTILLED_EXTRA)},
    )
    async with client_for(DISTILLED) as client:
        resp = await replay(client, request)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["extra"] == DISTILLED_EXTRA
    assert (body["num_frames"], body["width"], body["height"]) == (192, 640, 384)


async def test_sdk_input_reference_file_and_extra_top_level_fields(client_for: Any) -> None:
    request = sdk_request(
        prompt="the water ripples",
        model="BestWishYsh/Helios-Distilled",
        input_reference=("ref.jpg", png_bytes(), "image/jpeg"),  # the name lies; bytes decide
        extra_body={"width": 640, "height": 384, "seed": 5, "guidance_scale": 1.0},
    )
    async with client_for(DISTILLED) as client:
        resp = await replay(client, request)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["reference"] == {"kind": "image", "frames": 1}
    assert (body["mode"], body["seed"]) == ("i2v", 5)


async def test_sdk_bad_extra_params_raise_bad_request_with_param(client_for: Any) -> None:
    request = sdk_request(
        prompt="p",
        model="BestWishYsh/Helios-Distilled",
        extra_body={"extra_params": {"pyramid_num_inference_steps_list": [2, "x", 2]}},
    )
    async with client_for(DISTILLED) as client:
        resp = await replay(client, request)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "extra_params.pyramid_num_inference_steps_list"


def test_sdk_raises_bad_request_error_on_our_envelope() -> None:
    """The SDK turns our 400 into `BadRequestError` carrying `param` and `code`."""
    from fastapi.testclient import TestClient

    from .conftest import make_app

    app_client = TestClient(make_app(DISTILLED))

    def forward(request: httpx.Request) -> httpx.Response:
        resp = app_client.post(
            "/v1/videos",
            content=request.read(),
            headers={"content-type": request.headers["content-type"]},
        )
        return httpx.Response(resp.status_code, content=resp.content, headers=resp.headers)

    http = httpx.Client(transport=httpx.MockTransport(forward))
    client = openai.OpenAI(
        base_url="http://sdk.test/v1", api_key="k", http_client=http, max_retries=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(openai.BadRequestError) as info:
            client.videos.create(prompt="  ", model="BestWishYsh/Helios-Distilled")
    assert info.value.param == "prompt"
    assert info.value.code == "invalid_value"
