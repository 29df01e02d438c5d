"""The error envelope: every failure, whoever raised it, is compact JSON in OpenAI's shape."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from helios_serve.errors import HeliosError, InvalidInputError
from helios_serve.web.errors import (
    ApiError,
    api_error_from_domain,
    api_error_from_validation,
    error_body,
    error_type_for,
)
from helios_serve.web.responses import CompactJSONResponse, compact_json

pytestmark = pytest.mark.anyio


def assert_envelope(
    resp: httpx.Response, status: int, code: str | None = None
) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "detail"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert body["detail"] == error["message"]  # what vLLM-Omni's clients read
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


def test_error_body_is_openai_shape() -> None:
    body = error_body("bad", "invalid_request_error", "prompt", "invalid_value")
    assert body == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": "invalid_value",
        },
        "detail": "bad",
    }


def test_compact_json_has_no_spaces_and_survives_lone_surrogates() -> None:
    assert compact_json({"id": "video_1", "n": [1, 2]}) == b'{"id":"video_1","n":[1,2]}'
    out = compact_json({"message": "bad key \ud800"})
    assert json.loads(out) == {"message": "bad key \ud800"}
    with pytest.raises(ValueError, match="JSON compliant"):
        compact_json({"x": math.nan})
    assert CompactJSONResponse({"a": 1}).body == b'{"a":1}'


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (404, "invalid_request_error"),
        (413, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "service_unavailable_error"),
    ],
)
def test_error_type_per_status(status: int, kind: str) -> None:
    assert error_type_for(status) == kind
    assert ApiError(status, "m", code="c").type == kind


def test_api_error_response_keeps_headers() -> None:
    resp = ApiError(429, "slow down", code="rate_limit_exceeded", headers={"Retry-After": "3"})
    out = resp.response()
    assert out.status_code == 429
    assert out.headers["retry-after"] == "3"
    assert json.loads(bytes(out.body))["error"]["type"] == "rate_limit_error"


def test_domain_errors_map_by_class_and_keep_code_and_param() -> None:
    err = api_error_from_domain(InvalidInputError("bad frames", param="frames"))
    assert (err.status, err.code, err.param, err.message) == (
        400,
        "invalid_input",
        "frames",
        "bad frames",
    )

    class JobNotFoundError(HeliosError):
        code = "job_not_found"

    assert api_error_from_domain(JobNotFoundError("gone")).status == 500
    mapped = api_error_from_domain(JobNotFoundError("no such job"), {JobNotFoundError: 404})
    assert (mapped.status, mapped.code, mapped.message) == (404, "job_not_found", "no such job")


def test_validation_errors_name_the_first_field_without_echoing_input() -> None:
    err = api_error_from_validation(
        [
            {
                "type": "int_parsing",
                "loc": ("body", "width"),
                "msg": "Input should be a valid integer",
                "input": "SECRET",
            }
        ],
        skip_sources=True,
    )
    assert (err.status, err.param, err.code) == (400, "width", "invalid_type")
    assert "SECRET" not in err.message
    missing = api_error_from_validation(
        [{"type": "missing", "loc": ("prompt",), "msg": "Field required"}]
    )
    assert (missing.code, missing.param) == ("missing_required_parameter", "prompt")
    nested = api_error_from_validation(
        [{"type": "less_than_equal", "loc": ("steps", 1), "msg": "Input should be <= 100"}],
        prefix="extra_params.",
    )
    assert nested.param == "extra_params.steps"
    assert "extra_params.steps[1]" in nested.message


async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient) -> None:
    error = assert_envelope(await client.get("/v1/nothing-here"), 404, "not_found")
    assert error["type"] == "invalid_request_error"
    assert "/v1/nothing-here" in str(error["message"])


async def test_wrong_method_is_405_envelope_with_allow(client: httpx.AsyncClient) -> None:
    resp = await client.put("/v1/videos")
    assert_envelope(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["allow"]


async def test_fastapi_validation_is_400_naming_the_field(client: httpx.AsyncClient) -> None:
    error = assert_envelope(await client.get("/v1/videos/v1?limit=500"), 400, "invalid_value")
    assert error["param"] == "limit"
    error = assert_envelope(await client.get("/v1/videos/v1?limit=nan"), 400, "invalid_type")
    assert error["param"] == "limit"


async def test_unexpected_exception_is_500_without_details(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    error = assert_envelope(await client.get("/boom"), 500, "internal_error")
    assert error["type"] == "server_error"
    assert "secret" not in str(error["message"])
    assert any("unhandled error" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("invalid", 400, "invalid_input"),
        ("cancelled", 409, "cancelled"),
        ("checkpoint", 503, "invalid_checkpoint"),
        ("plain", 500, "helios_error"),
    ],
)
async def test_domain_errors_through_handlers(
    client: httpx.AsyncClient, kind: str, status: int, code: str
) -> None:
    error = assert_envelope(await client.get(f"/domain/{kind}"), status, code)
    if status >= 500:
        assert "internal trouble" not in str(error["message"])
        assert "weights missing" not in str(error["message"])
    else:
        assert error["message"] in ("bad frames", "stream cancelled")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b'{"prompt": "p", "strength": NaN}', "strength", "invalid_value"),
        (b'{"prompt": "p", "strength": 1e999}', "strength", "invalid_value"),
        (b'{"strength": 0.1}', "prompt", "missing_required_parameter"),
        (b'{"prompt": ', None, "invalid_json"),
    ],
)
async def test_fastapi_json_body_errors_never_echo_nan(
    client: httpx.AsyncClient, body: bytes, param: str | None, code: str
) -> None:
    resp = await client.post("/remix", content=body, headers={"content-type": "application/json"})
    error = assert_envelope(resp, 400, code)
    assert error["param"] == param
