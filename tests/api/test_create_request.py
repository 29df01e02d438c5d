"""`POST /v1/videos` through the parser: every spelling accepted, every bad input a 4xx envelope."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from helios_serve.core.spec import ModelInfo

from .conftest import BASE, DISTILLED, MID, png_bytes
from .test_errors import assert_envelope

pytestmark = pytest.mark.anyio

PROMPT = "A serene lakeside sunrise with mist over the water."


def form(**fields: Any) -> dict[str, Any]:
    """Multipart text parts, as curl -F sends them."""
    return {"files": [(k, (None, str(v))) for k, v in fields.items()]}


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


async def post(client: httpx.AsyncClient, **kwargs: Any) -> httpx.Response:
    return await client.post("/v1/videos", **kwargs)


# ----------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("model", "guidance", "steps", "pyramid", "amplify"),
    [
        (BASE, 5.0, 50, None, False),
        (MID, 5.0, None, [20, 20, 20], False),
        (DISTILLED, 1.0, None, [2, 2, 2], True),
    ],
)
async def test_bare_prompt_gets_the_variant_preset(
    client_for: Any,
    model: ModelInfo,
    guidance: float,
    steps: int | None,
    pyramid: list[int] | None,
    amplify: bool,
) -> None:
    async with client_for(model) as client:
        resp = await post(client, json={"prompt": PROMPT})
    assert resp.status_code == 200, resp.text
    assert b'"id":"video_test"' in resp.content  # compact: the seed scripts grep this
    body = resp.json()
    settings = body["settings"]
    assert settings["guidance_scale"] == guidance
    assert settings["amplify_first_chunk"] is amplify
    if steps is not None:
        assert settings["num_inference_steps"] == steps
    if pyramid is not None:
        assert settings["pyramid_steps"] == pyramid
    assert (body["width"], body["height"], body["fps"]) == (640, 384, 24)
    assert (body["num_frames"], body["delivered_frames"], body["mode"]) == (99, 99, "t2v")
    assert body["model"] is None


async def test_json_body_with_nested_extra_params_and_size(client_for: Any) -> None:
    payload = {
        "prompt": PROMPT,
        "model": "BestWishYsh/Helios-Mid",
        "size": "1280x704",
        "seconds": "4",
        "fps": 16,
        "seed": 2**63 - 1,
        "negative_prompt": "blurry",
        "extra_params": {"pyramid_num_inference_steps_list": [10, 8, 6], "zero_steps": 0},
    }
    async with client_for(MID) as client:
        resp = await post(client, json=payload)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["width"], body["height"], body["num_frames"], body["fps"]) == (1280, 704, 64, 16)
    assert body["seed"] == 2**63 - 1
    assert body["settings"]["pyramid_steps"] == [10, 8, 6]
    assert body["settings"]["negative_prompt"] == "blurry"
    assert body["settings"]["zero_steps"] == 0


async def test_json_seconds_may_be_an_integer_and_extra_params_a_string(client_for: Any) -> None:
    payload = {"prompt": PROMPT, "seconds": 8, "extra_params": json.dumps({"zero_steps": 2})}
    async with client_for(DISTILLED) as client:
        resp = await post(client, json=payload)
    assert resp.status_code == 200, resp.text
    assert resp.json()["num_frames"] == 192
    assert resp.json()["settings"]["zero_steps"] == 2


async def test_urlencoded_form_like_requests_data(client: httpx.AsyncClient) -> None:
    data = {
        "prompt": PROMPT,
        "width": "640",
        "height": "384",
        "guidance_scale": "5.0",
        "num_frames": "33",
    }
    resp = await post(client, data=data)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["num_frames"], resp.json()["delivered_frames"]) == (33, 33)


async def test_alias_and_blank_model_are_accepted(client: httpx.AsyncClient) -> None:
    assert (await post(client, json={"prompt": "p", "model": "helios-base"})).status_code == 200
    assert (await post(client, **form(prompt="p", model=""))).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("user", "abc", "unknown_parameter"),
        ("metadata", {"a": 1}, "unknown_parameter"),
        ("file_id", "file_123", "unsupported_parameter"),
        ("audio_reference", {"audio_url": "data:audio/wav;base64,AAAA"}, "unsupported_parameter"),
        ("lora", {"name": "x"}, "unsupported_parameter"),
    ],
)
async def test_no_field_is_dropped_without_a_word(
    client: httpx.AsyncClient, field: str, value: Any, code: str
) -> None:
    """OpenAI refuses unknown arguments; so do we, naming the field."""
    resp = await post(client, json={"prompt": "p", field: value})
    assert resp.status_code == 400, resp.text
    assert (resp.json()["error"]["param"], resp.json()["error"]["code"]) == (field, code)
    form = await post(client, data={"prompt": "p", field: json.dumps(value)})
    assert form.status_code == 400, form.text


async def test_vllm_reference_fields_and_flattened_input_reference(
    client: httpx.AsyncClient,
) -> None:
    url = "data:image/png;base64," + base64.b64encode(png_bytes(64, 48, noisy=True)).decode()
    image = await post(client, json={"prompt": "p", "image_reference": {"image_url": url}})
    assert image.status_code == 200, image.text
    assert image.json()["reference"]["kind"] == "image"
    flat = await post(client, data={"prompt": "p", "input_reference[image_url]": url})
    assert flat.status_code == 200, flat.text
    assert flat.json()["mode"] == "i2v"
    both = await post(
        client,
        json={"prompt": "p", "image_reference": {"image_url": url}, "input_reference": url},
    )
    assert both.status_code == 400
    assert both.json()["error"]["code"] == "duplicate_parameter"
    wrong = await post(client, json={"prompt": "p", "video_reference": {"video_url": url}})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["param"] == "video_reference"


BAD_FORMS: list[tuple[str, dict[str, Any], int, str | None, str]] = [
    (
        "no prompt",
        {"model": "BestWishYsh/Helios-Base"},
        400,
        "prompt",
        "missing_required_parameter",
    ),
    ("blank prompt", {"prompt": "   \n"}, 400, "prompt", "invalid_value"),
    ("NUL in prompt", {"prompt": "a\x00b"}, 400, "prompt", "invalid_value"),
    ("huge prompt", {"prompt": "x" * 32_001}, 400, "prompt", "invalid_value"),
    ("wrong model", {"prompt": "p", "model": "sora-2"}, 400, "model", "model_not_found"),
    ("width not a number", {"prompt": "p", "width": "abc"}, 400, "width", "invalid_type"),
    ("width fractional", {"prompt": "p", "width": "640.5"}, 400, "width", "invalid_type"),
    ("negative width", {"prompt": "p", "width": "-640"}, 400, "width", "invalid_value"),
    ("zero height", {"prompt": "p", "height": "0"}, 400, "height", "invalid_value"),
    ("width odd", {"prompt": "p", "width": "651"}, 400, "width", "invalid_value"),
    ("huge width", {"prompt": "p", "width": "99999"}, 400, "width", "invalid_value"),
    ("size over cap", {"prompt": "p", "size": "99999x99999"}, 400, "size", "invalid_value"),
    ("size zero", {"prompt": "p", "size": "0x0"}, 400, "size", "invalid_value"),
    ("size garbage", {"prompt": "p", "size": "big"}, 400, "size", "invalid_value"),
    ("num_frames zero", {"prompt": "p", "num_frames": "0"}, 400, "num_frames", "invalid_value"),
    (
        "num_frames huge",
        {"prompt": "p", "num_frames": "1000000"},
        400,
        "num_frames",
        "invalid_value",
    ),
    (
        "num_frames 5000 digits",
        {"prompt": "p", "num_frames": "9" * 5000},
        400,
        "num_frames",
        "invalid_type",
    ),
    ("fps zero", {"prompt": "p", "fps": "0"}, 400, "fps", "invalid_value"),
    ("fps huge", {"prompt": "p", "fps": "240"}, 400, "fps", "invalid_value"),
    ("seconds zero", {"prompt": "p", "seconds": "0"}, 400, "seconds", "invalid_value"),
    ("seconds fractional", {"prompt": "p", "seconds": "2.5"}, 400, "seconds", "invalid_value"),
    ("seconds too long", {"prompt": "p", "seconds": "100000"}, 400, "seconds", "invalid_value"),
    ("negative seed", {"prompt": "p", "seed": "-2"}, 400, "seed", "invalid_value"),
    ("seed over 2**63", {"prompt": "p", "seed": str(2**63)}, 400, "seed", "invalid_value"),
    (
        "guidance nan",
        {"prompt": "p", "guidance_scale": "nan"},
        400,
        "guidance_scale",
        "invalid_value",
    ),
    (
        "guidance inf",
        {"prompt": "p", "guidance_scale": "1e999"},
        400,
        "guidance_scale",
        "invalid_value",
    ),
    (
        "guidance huge",
        {"prompt": "p", "guidance_scale": "31"},
        400,
        "guidance_scale",
        "invalid_value",
    ),
    (
        "steps zero",
        {"prompt": "p", "num_inference_steps": "0"},
        400,
        "num_inference_steps",
        "invalid_value",
    ),
    (
        "steps huge",
        {"prompt": "p", "num_inference_steps": "201"},
        400,
        "num_inference_steps",
        "invalid_value",
    ),
    (
        "malformed extra_params",
        {"prompt": "p", "extra_params": "{'zero_steps': 1}"},
        400,
        "extra_params",
        "invalid_json",
    ),
    (
        "unknown extra key",
        {"prompt": "p", "extra_params": '{"warp": 9}'},
        400,
        "extra_params.warp",
        "unknown_parameter",
    ),
    (
        "extra bool as string",
        {"prompt": "p", "extra_params": '{"use_cfg_zero_star": "yes"}'},
        400,
        "extra_params.use_cfg_zero_star",
        "invalid_type",
    ),
    (
        "stage2 on Base",
        {"prompt": "p", "extra_params": '{"is_enable_stage2": true}'},
        400,
        "extra_params.is_enable_stage2",
        "unsupported_parameter",
    ),
    (
        "Helios key at top level",
        {"prompt": "p", "zero_steps": "1"},
        400,
        "zero_steps",
        "unknown_parameter",
    ),
]


@pytest.mark.parametrize(
    ("case", "fields", "status", "param", "code"), BAD_FORMS, ids=[c[0] for c in BAD_FORMS]
)
async def test_bad_form_fields(
    client: httpx.AsyncClient,
    case: str,
    fields: dict[str, Any],
    status: int,
    param: str | None,
    code: str,
) -> None:
    error = assert_envelope(await post(client, **form(**fields)), status, code)
    assert error["param"] == param, error


async def test_an_odd_size_is_refused_with_the_nearest_even_ones(client_for: Any) -> None:
    async with client_for(DISTILLED) as client:
        error = assert_envelope(await post(client, json={"prompt": "p", "size": "651x384"}), 400)
    assert error["param"] == "size"
    assert "650 or 652" in str(error["message"])


async def test_a_size_the_model_cannot_make_is_made_larger_and_cut(client_for: Any) -> None:
    async with client_for(MID) as client:
        body = (await post(client, json={"prompt": "p", "width": 656})).json()
    assert (body["width"], body["height"], body["output_size"]) == (704, 384, [656, 384])
    async with client_for(BASE) as client:  # Base makes multiples of 16 directly
        body = (await post(client, json={"prompt": "p", "width": 656})).json()
    assert (body["width"], body["output_size"]) == (656, None)


async def test_num_inference_steps_on_a_pyramid_model_points_at_the_list(client_for: Any) -> None:
    async with client_for(DISTILLED) as client:
        resp = await post(client, **form(prompt="p", num_inference_steps="50"))
    error = assert_envelope(resp, 400, "unsupported_parameter")
    assert error["param"] == "num_inference_steps"
    assert "pyramid_num_inference_steps_list" in str(error["message"])


BAD_JSON: list[tuple[str, Any, str | None, str]] = [
    ("prompt not a string", {"prompt": 5}, "prompt", "invalid_type"),
    ("width as string", {"prompt": "p", "width": "640"}, "width", "invalid_type"),
    ("width as float", {"prompt": "p", "width": 640.0}, "width", "invalid_type"),
    ("width as bool", {"prompt": "p", "width": True}, "width", "invalid_type"),
    ("seconds as float", {"prompt": "p", "seconds": 4.5}, "seconds", "invalid_type"),
    ("extra_params a list", {"prompt": "p", "extra_params": [1]}, "extra_params", "invalid_type"),
    (
        "extra int as string",
        {"prompt": "p", "extra_params": {"zero_steps": "1"}},
        "extra_params.zero_steps",
        "invalid_type",
    ),
    ("lone surrogate prompt", {"prompt": "\ud800"}, "prompt", "invalid_value"),
    (
        "http image_url",
        {"prompt": "p", "input_reference": {"image_url": "http://127.0.0.1:9/x.png"}},
        "input_reference",
        "invalid_input_reference",
    ),
    (
        "https string",
        {"prompt": "p", "input_reference": "https://example.com/a.png"},
        "input_reference",
        "invalid_input_reference",
    ),
    (
        "file url",
        {"prompt": "p", "input_reference": {"image_url": "file:///etc/passwd"}},
        "input_reference",
        "invalid_input_reference",
    ),
    (
        "file_id",
        {"prompt": "p", "input_reference": {"file_id": "file-123"}},
        "input_reference",
        "invalid_input_reference",
    ),
    (
        "bad base64",
        {"prompt": "p", "input_reference": "data:image/png;base64,%%%"},
        "input_reference",
        "invalid_input_reference",
    ),
    (
        "no comma",
        {"prompt": "p", "input_reference": "data:image/png;base64"},
        "input_reference",
        "invalid_input_reference",
    ),
    (
        "reference a number",
        {"prompt": "p", "input_reference": 5},
        "input_reference",
        "invalid_type",
    ),
]


@pytest.mark.parametrize(
    ("case", "payload", "param", "code"), BAD_JSON, ids=[c[0] for c in BAD_JSON]
)
async def test_bad_json_fields(
    client: httpx.AsyncClient, case: str, payload: Any, param: str | None, code: str
) -> None:
    body = json.dumps(payload).encode()
    resp = await post(client, content=body, headers={"content-type": "application/json"})
    error = assert_envelope(resp, 400, code)
    assert error["param"] == param, error


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"prompt": NaN}', "invalid_json"),
        (b"[" * 100_000, "invalid_json"),
        (b'{"prompt": "p", "seed": ' + b"9" * 5000 + b"}", "invalid_json"),
        (b'["prompt"]', "invalid_body"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
    ],
)
async def test_malformed_json_bodies(client: httpx.AsyncClient, body: bytes, code: str) -> None:
    resp = await post(client, content=body, headers={"content-type": "application/json"})
    assert_envelope(resp, 400, code)


@pytest.mark.parametrize(
    ("parts", "param", "code"),
    [
        ([("prompt", (None, "a")), ("prompt", (None, "b"))], "prompt", "duplicate_parameter"),
        (
            [("prompt", (None, "p")), ("image", ("a.png", b"\x89PNG", "image/png"))],
            "image",
            "invalid_value",
        ),
        ([("prompt", ("p.txt", b"a prompt", "text/plain"))], "prompt", "invalid_value"),
        (
            [
                ("prompt", (None, "p")),
                ("extra_params", (None, "{}")),
                ("extra_params[zero_steps]", (None, "1")),
            ],
            "extra_params",
            "invalid_value",
        ),
        (
            [
                ("prompt", (None, "p")),
                ("input_reference", (None, "data:,x")),
                ("input_reference", ("a.png", b"x", "image/png")),
            ],
            "input_reference",
            "duplicate_parameter",
        ),
    ],
)
async def test_bad_multipart_shapes(
    client: httpx.AsyncClient, parts: list[Any], param: str, code: str
) -> None:
    error = assert_envelope(await post(client, files=parts), 400, code)
    assert error["param"] == param
