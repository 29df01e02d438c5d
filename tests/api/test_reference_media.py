"""`input_reference` over HTTP: uploads and data URLs, judged by their bytes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import bomb_png
from .test_create_request import PROMPT, data_url, post
from .test_errors import assert_envelope

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("reference", "kind", "mode"),
    [("png", "image", "i2v"), ("mp4", "video", "v2v")],
)
async def test_reference_upload_by_bytes_not_name(
    client: httpx.AsyncClient, media: dict[str, bytes], reference: str, kind: str, mode: str
) -> None:
    files = [
        ("prompt", (None, PROMPT)),
        ("input_reference", ("notes.txt", media[reference], "text/plain")),
    ]
    resp = await post(client, files=files)
    assert resp.status_code == 200, resp.text
    assert resp.json()["reference"]["kind"] == kind
    assert resp.json()["mode"] == mode


@pytest.mark.parametrize(
    "shape",
    [
        lambda url: url,
        lambda url: {"image_url": url},
        lambda url: {"image_url": {"url": url}},
    ],
)
async def test_json_data_url_reference(
    client: httpx.AsyncClient, media: dict[str, bytes], shape: Any
) -> None:
    resp = await post(
        client, json={"prompt": PROMPT, "input_reference": shape(data_url(media["png"]))}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["mode"] == "i2v"


async def test_text_form_data_url_reference(
    client: httpx.AsyncClient, media: dict[str, bytes]
) -> None:
    resp = await post(
        client, data={"prompt": PROMPT, "input_reference": data_url(media["mp4"], "video/mp4")}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["mode"] == "v2v"


async def test_a_short_video_is_a_v2v_reference(
    client: httpx.AsyncClient, media: dict[str, bytes]
) -> None:
    """Under one chunk (10 frames) is fine: the engine pads it with its first frame."""
    files = [("prompt", (None, "p")), ("input_reference", ("clip.mp4", media["short_mp4"], "x"))]
    resp = await post(client, files=files)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["mode"], resp.json()["reference"]["frames"]) == ("v2v", 10)


# ----------------------------------------------------------------------------- rejected

REFERENCE_CASES = [
    ("truncated_png", 422, "unprocessable_media"),
    ("bomb_png", 422, "unprocessable_media"),
    ("truncated_mp4", 422, "unprocessable_media"),
    ("text", 400, "invalid_input_reference"),
    ("hls", 400, "invalid_input_reference"),
]


@pytest.mark.parametrize(("name", "status", "code"), REFERENCE_CASES)
async def test_bad_reference_uploads(
    client: httpx.AsyncClient, media: dict[str, bytes], name: str, status: int, code: str
) -> None:
    files = [("prompt", (None, "p")), ("input_reference", ("clip.mp4", media[name], "video/mp4"))]
    error = assert_envelope(await post(client, files=files), status, code)
    assert error["param"] == "input_reference"


@pytest.mark.parametrize(("name", "status", "code"), REFERENCE_CASES)
async def test_bad_reference_data_urls(
    client: httpx.AsyncClient, media: dict[str, bytes], name: str, status: int, code: str
) -> None:
    payload = {"prompt": "p", "input_reference": {"image_url": data_url(media[name])}}
    error = assert_envelope(await post(client, json=payload), status, code)
    assert error["param"] == "input_reference"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
async def test_reference_over_pixel_cap_is_422(client: httpx.AsyncClient) -> None:
    files = [
        ("prompt", (None, "p")),
        ("input_reference", ("a.png", bomb_png(10000, 10000), "image/png")),
    ]
    error = assert_envelope(await post(client, files=files), 422, "unprocessable_media")
    assert "limit" in str(error["message"])


async def test_hls_message_says_what_the_file_looks_like(
    client: httpx.AsyncClient, media: dict[str, bytes]
) -> None:
    files = [
        ("prompt", (None, "p")),
        ("input_reference", ("a.m3u8", media["hls"], "application/x-mpegurl")),
    ]
    error = assert_envelope(await post(client, files=files), 400)
    assert "HLS playlist" in str(error["message"])


async def test_empty_file_part_without_a_name_means_no_reference(client: httpx.AsyncClient) -> None:
    files = [("prompt", (None, "p")), ("input_reference", ("", b"", "application/octet-stream"))]
    resp = await post(client, files=files)
    assert resp.status_code == 200, resp.text
    assert resp.json()["mode"] == "t2v"


async def test_empty_named_file_is_400(client: httpx.AsyncClient) -> None:
    files = [("prompt", (None, "p")), ("input_reference", ("a.png", b"", "image/png"))]
    error = assert_envelope(await post(client, files=files), 400, "invalid_input_reference")
    assert "empty" in str(error["message"])
