"""`extra_params`: the three spellings, strict keys and types, and per-variant combinations."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helios_serve.api.videos.extra import (
    HeliosExtraParams,
    check_for_model,
    parse_extra_params,
    unflatten_bracket_fields,
    validate_extra_params,
)
from helios_serve.api.videos.fields import VideoCreateRequest
from helios_serve.api.videos.resolve import settings_for
from helios_serve.core.requests import RequestError
from helios_serve.core.spec import ModelInfo
from helios_serve.web.errors import ApiError

from .conftest import BASE, DISTILLED, MID

MID_PRESET = {
    "is_enable_stage2": True,
    "pyramid_num_stages": 3,
    "pyramid_num_inference_steps_list": [20, 20, 20],
    "use_cfg_zero_star": True,
    "use_zero_init": True,
    "zero_steps": 1,
}


def raises_api(status: int, param: str | None, code: str | None = None) -> Any:
    class _Check:
        def __enter__(self) -> _Check:
            return self

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
            # the vocabulary's RequestError is the API's 400 (web.errors maps it)
            assert isinstance(exc, ApiError | RequestError), f"expected a 4xx, got {exc!r}"
            assert getattr(exc, "status", 400) == status, exc.message
            assert exc.param == param, (exc.param, exc.message)
            if code is not None:
                assert exc.code == code, (exc.code, exc.message)
            self.error = exc
            return True

    return _Check()


# ----------------------------------------------------------------------------- spellings


def test_json_string_and_object_give_the_same_dict() -> None:
    assert parse_extra_params(json.dumps(MID_PRESET)) == MID_PRESET
    assert parse_extra_params(MID_PRESET) == MID_PRESET


@pytest.mark.parametrize("raw", [None, "", "   ", "null"])
def test_empty_spellings_mean_no_extra_params(raw: str | None) -> None:
    assert parse_extra_params(raw) == {}


def test_multiline_json_string_as_the_seed_scripts_send_it() -> None:
    raw = (
        '{\n"is_enable_stage2": true,\n"pyramid_num_stages": 3,\n'
        '"pyramid_num_inference_steps_list": [2, 2, 2],\n"is_amplify_first_chunk": true\n}'
    )
    assert parse_extra_params(raw)["pyramid_num_inference_steps_list"] == [2, 2, 2]


def test_malformed_json_names_the_position() -> None:
    with raises_api(400, "extra_params", "invalid_json") as check:
        parse_extra_params('{"is_enable_stage2": true,, }')
    assert "line 1 column 27" in check.error.message


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("[1, 2]", "invalid_type"),
        ('"text"', "invalid_type"),
        ('{"zero_steps": NaN}', "invalid_json"),
        ('{"zero_steps": Infinity}', "invalid_json"),
        ("[" * 100_000, "invalid_json"),
        ('{"zero_steps": ' + "9" * 5000 + "}", "invalid_json"),
    ],
)
def test_non_object_or_hostile_json_is_400(raw: str, code: str) -> None:
    with raises_api(400, "extra_params", code):
        parse_extra_params(raw)


def test_bracket_fields_unflatten_like_the_openai_sdk_writes_them() -> None:
    items = [
        ("extra_params[is_enable_stage2]", "true"),
        ("extra_params[pyramid_num_inference_steps_list][]", "2"),
        ("extra_params[pyramid_num_inference_steps_list][]", "3"),
        ("extra_params[image_noise_sigma_min]", "0.1"),
    ]
    assert unflatten_bracket_fields(items) == {
        "is_enable_stage2": "true",
        "pyramid_num_inference_steps_list": ["2", "3"],
        "image_noise_sigma_min": "0.1",
    }


@pytest.mark.parametrize(
    ("items", "param", "code"),
    [
        (
            [("extra_params[zero_steps]", "1"), ("extra_params[zero_steps]", "2")],
            "extra_params.zero_steps",
            "duplicate_parameter",
        ),
        ([("extra_params[a][b]", "1")], "extra_params", "invalid_value"),
        ([("extra_params[]", "1")], "extra_params", "invalid_value"),
        ([("extra_params[x]", "1"), ("extra_params[x][]", "2")], "extra_params.x", "invalid_value"),
    ],
)
def test_bad_bracket_fields_are_400(items: list[tuple[str, str]], param: str, code: str) -> None:
    with raises_api(400, param, code):
        unflatten_bracket_fields(items)


# ----------------------------------------------------------------------------- keys and types


def test_unknown_key_is_named() -> None:
    with raises_api(400, "extra_params.num_stages", "unknown_parameter") as check:
        validate_extra_params({"num_stages": 3})
    assert "pyramid_num_stages" in check.error.message  # the list of known keys helps


@pytest.mark.parametrize(
    ("values", "param", "code"),
    [
        ({"is_enable_stage2": "true"}, "extra_params.is_enable_stage2", "invalid_type"),
        ({"is_enable_stage2": 1}, "extra_params.is_enable_stage2", "invalid_type"),
        ({"zero_steps": 1.5}, "extra_params.zero_steps", "invalid_type"),
        ({"zero_steps": True}, "extra_params.zero_steps", "invalid_type"),
        ({"zero_steps": 101}, "extra_params.zero_steps", "invalid_value"),
        ({"zero_steps": -1}, "extra_params.zero_steps", "invalid_value"),
        (
            {"pyramid_num_inference_steps_list": [2, "2", 2]},
            "extra_params.pyramid_num_inference_steps_list",
            "invalid_type",
        ),
        (
            {"pyramid_num_inference_steps_list": [0, 2, 2]},
            "extra_params.pyramid_num_inference_steps_list",
            "invalid_value",
        ),
        (
            {"pyramid_num_inference_steps_list": [101, 2, 2]},
            "extra_params.pyramid_num_inference_steps_list",
            "invalid_value",
        ),
        (
            {"pyramid_num_inference_steps_list": 2},
            "extra_params.pyramid_num_inference_steps_list",
            "invalid_type",
        ),
        (
            {"pyramid_num_inference_steps_list": []},
            "extra_params.pyramid_num_inference_steps_list",
            "invalid_value",
        ),
        ({"image_noise_sigma_min": 1.5}, "extra_params.image_noise_sigma_min", "invalid_value"),
        ({"video_noise_sigma_max": -0.1}, "extra_params.video_noise_sigma_max", "invalid_value"),
        ({"max_sequence_length": 0}, "extra_params.max_sequence_length", "invalid_value"),
        ({"max_sequence_length": 513}, "extra_params.max_sequence_length", "invalid_value"),
    ],
)
def test_strict_json_types_and_ranges(values: dict[str, Any], param: str, code: str) -> None:
    with raises_api(400, param, code):  # types here, ranges in the vocabulary
        extra = validate_extra_params(values)
        settings_for(VideoCreateRequest(prompt="p", extra=extra), DISTILLED)


def test_float_fields_accept_json_integers() -> None:
    assert validate_extra_params({"image_noise_sigma_min": 0}).image_noise_sigma_min == 0.0


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("false", False), ("1", True), ("0", False)]
)
def test_form_text_booleans(text: str, value: bool) -> None:
    assert validate_extra_params({"use_cfg_zero_star": text}, lax=True).use_cfg_zero_star is value


def test_form_text_values_are_parsed_then_range_checked() -> None:
    parsed = validate_extra_params(
        {
            "pyramid_num_inference_steps_list": ["2", "3", "4"],
            "zero_steps": "1",
            "image_noise_sigma_max": "0.2",
        },
        lax=True,
    )
    assert parsed.pyramid_num_inference_steps_list == [2, 3, 4]
    assert (parsed.zero_steps, parsed.image_noise_sigma_max) == (1, 0.2)
    with raises_api(400, "extra_params.is_enable_stage2", "invalid_type"):
        validate_extra_params({"is_enable_stage2": "maybe"}, lax=True)
    with raises_api(400, "extra_params.zero_steps", "invalid_type"):
        validate_extra_params({"zero_steps": "abc"}, lax=True)
    with raises_api(400, "extra_params.image_noise_sigma_min", "invalid_value"):
        validate_extra_params({"image_noise_sigma_min": "nan"}, lax=True)


# ----------------------------------------------------------------------------- combinations


@pytest.mark.parametrize(
    ("model", "values"),
    [
        (MID, MID_PRESET),
        (
            DISTILLED,
            {
                "is_enable_stage2": True,
                "pyramid_num_stages": 3,
                "pyramid_num_inference_steps_list": [2, 2, 2],
                "is_amplify_first_chunk": True,
            },
        ),
        (BASE, {"use_cfg_zero_star": True, "is_enable_stage2": False, "pyramid_num_stages": 1}),
        (
            BASE,
            {
                "history_sizes": [16, 2, 1],
                "num_latent_frames_per_chunk": 9,
                "is_skip_first_chunk": False,
            },
        ),
        (MID, {"image_noise_sigma_min": 0.2, "image_noise_sigma_max": 0.3}),
    ],
)
def test_workable_combinations_pass(model: ModelInfo, values: dict[str, Any]) -> None:
    check_for_model(validate_extra_params(values), model)


@pytest.mark.parametrize(
    ("model", "values", "key", "code"),
    [
        (BASE, {"is_enable_stage2": True}, "is_enable_stage2", "unsupported_parameter"),
        (MID, {"is_enable_stage2": False}, "is_enable_stage2", "unsupported_parameter"),
        (
            BASE,
            {"pyramid_num_inference_steps_list": [2, 2, 2]},
            "pyramid_num_inference_steps_list",
            "unsupported_parameter",
        ),
        (BASE, {"pyramid_num_stages": 3}, "pyramid_num_stages", "unsupported_parameter"),
        (DISTILLED, {"pyramid_num_stages": 2}, "pyramid_num_stages", "unsupported_parameter"),
        (
            DISTILLED,
            {"pyramid_num_inference_steps_list": [2, 2]},
            "pyramid_num_inference_steps_list",
            "invalid_value",
        ),
        (MID, {"is_amplify_first_chunk": True}, "is_amplify_first_chunk", "unsupported_parameter"),
        (BASE, {"is_amplify_first_chunk": True}, "is_amplify_first_chunk", "unsupported_parameter"),
        (DISTILLED, {"is_skip_first_chunk": True}, "is_skip_first_chunk", "unsupported_parameter"),
        (DISTILLED, {"history_sizes": [8, 2, 1]}, "history_sizes", "unsupported_parameter"),
        (
            DISTILLED,
            {"num_latent_frames_per_chunk": 5},
            "num_latent_frames_per_chunk",
            "unsupported_parameter",
        ),
        (
            MID,
            {"image_noise_sigma_min": 0.5, "image_noise_sigma_max": 0.2},
            "image_noise_sigma_min",
            "invalid_value",
        ),
        (MID, {"video_noise_sigma_min": 0.5}, "video_noise_sigma_min", "invalid_value"),
    ],
)
def test_impossible_combinations_name_the_key(
    model: ModelInfo, values: dict[str, Any], key: str, code: str
) -> None:
    with raises_api(400, f"extra_params.{key}", code) as check:
        extra = validate_extra_params(values)
        check_for_model(extra, model)
        settings_for(VideoCreateRequest(prompt="p", extra=extra), model)
    assert check.error.message


def test_model_is_immutable_and_forbids_extras() -> None:
    params = HeliosExtraParams(zero_steps=1)
    with pytest.raises(ValueError, match="frozen"):
        params.zero_steps = 2
    with pytest.raises(ValueError, match="Extra inputs"):
        HeliosExtraParams.model_validate({"zero_steps": 1, "bogus": True})
