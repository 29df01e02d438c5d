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


def test_every_videos_method_of_the_sdk_against_the_app(tmp_path: Any) -> None:
    """`client.videos.*` of the installed SDK, each against the whole app (a fake engine):
    create, poll, retrieve, list, every content variant, remix (of an extension too), extend
    with our own MP4 and with a foreign one, delete; edits and characters are refused
    cleanly (404 `unsupported`: Helios makes neither)."""
    from fastapi.testclient import TestClient

    from helios_serve.api.app import ApiConfig
    from helios_serve.compose.app import JobApi, build_app
    from helios_serve.compose.single import build_parts
    from helios_serve.engine.fake import FakeEngine, FakeEngineConfig

    engine = FakeEngine(FakeEngineConfig())
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    with TestClient(build_app(engine, jobs=JobApi(parts, ApiConfig()))) as app:

        def forward(request: httpx.Request) -> httpx.Response:
            resp = app.request(
                request.method, request.url.raw_path.decode(), content=request.read(),
                headers={k: v for k, v in request.headers.items() if k != "host"},
            )  # fmt: skip
            return httpx.Response(resp.status_code, content=resp.content, headers=resp.headers)

        http = httpx.Client(transport=httpx.MockTransport(forward))
        client = openai.OpenAI(base_url="http://sdk.test/v1", api_key="k", http_client=http)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK warns that Sora is being retired
            _drive(client)


def _drive(client: Any) -> None:
    fast = {"poll_interval_ms": 20}
    video = client.videos.create_and_poll(
        prompt="a fox", model="fake", size="64x64", extra_body={"num_frames": 33}, **fast
    )
    assert (video.status, video.seconds) == ("completed", "1.375")
    assert client.videos.retrieve(video.id).id == video.id
    assert video.id in [v.id for v in client.videos.list(limit=10).data]
    mp4 = client.videos.download_content(video.id).read()
    assert mp4[4:8] == b"ftyp"
    for variant in ("thumbnail", "spritesheet"):
        assert client.videos.download_content(video.id, variant=variant).read()[8:12] == b"WEBP"
    remix = client.videos.poll(client.videos.remix(video.id, prompt="a wolf").id, **fast)
    assert (remix.status, remix.remixed_from_video_id) == ("completed", video.id)
    ours = client.videos.extend(video=("ours.mp4", mp4, "video/mp4"), prompt="on", seconds="4")
    ours = client.videos.poll(ours.id, **fast)
    assert (ours.status, ours.seconds) == ("completed", "5.375")  # 33 frames + 4 s
    again = client.videos.poll(client.videos.remix(ours.id, prompt="off").id, **fast)
    assert again.status == "completed"
    foreign = client.videos.extend(
        video=("clip.mp4", _clip(), "video/mp4"), prompt="on", seconds="4"
    )
    assert client.videos.poll(foreign.id, **fast).status == "completed"
    with pytest.raises(openai.NotFoundError, match=r"unsupported|not supported"):
        client.videos.edit(prompt="x", video=("v.mp4", mp4, "video/mp4"))  # ids refused by it
    with pytest.raises(openai.NotFoundError):
        client.videos.create_character(name="fox", video=("c.mp4", mp4, "video/mp4"))
    with pytest.raises(openai.NotFoundError):
        client.videos.get_character("char_x")
    assert client.videos.delete(video.id).deleted is True


def _clip() -> bytes:
    """Ten frames of another encoder's MP4 (odd sides: cut by a pixel)."""
    import io

    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 50, 40, "yuv420p"
        for k in range(10):
            frame = np.full((40, 50, 3), 20 * k, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return out.getvalue()
