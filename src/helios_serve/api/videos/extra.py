"""`extra_params`: vLLM-Omni's Helios knobs, in any of the three spellings clients send.

- a JSON **string** (vLLM-Omni's clients, curl `-F extra_params='{...}'`);
- a nested **object** (JSON bodies);
- **bracket-flattened** form fields, which the `openai` SDK produces from a dict in multipart:
  `extra_params[is_enable_stage2]=true`, `extra_params[pyramid_num_inference_steps_list][]=2`
  once per item (None values and empty lists are left out by the SDK).

JSON spellings are validated strictly (a bool must be `true`/`false`, an int a JSON integer);
bracket fields are text, so they are parsed leniently ("true", "1", "5") and then range-checked
the same way. Unknown keys, wrong types and combinations the served checkpoint cannot run are
400s naming `extra_params.<key>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from helios_serve.core.json_text import JsonTextError, loads_strict
from helios_serve.core.settings import PRESETS
from helios_serve.core.spec import ModelInfo
from helios_serve.core.types import LATENT_FRAMES_PER_CHUNK, Variant
from helios_serve.web.errors import ApiError, api_error_from_validation, bad_request

HISTORY_SIZES = [16, 2, 1]
"""Latent history split (long, mid, short) every Helios checkpoint was trained with."""

_BRACKET = re.compile(r"^extra_params\[([^\[\]]*)\](.*)$", re.DOTALL)

Steps = int  # its range is the vocabulary's (core.requests)
Sigma = Annotated[float, Field(ge=0.0, le=1.0)]


class HeliosExtraParams(BaseModel):
    """The Helios keys of `extra_params` (vLLM-Omni's names); None means "not given"."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    is_enable_stage2: bool | None = None
    pyramid_num_stages: int | None = Field(default=None, ge=1, le=8)
    pyramid_num_inference_steps_list: list[Steps] | None = Field(
        default=None, min_length=1, max_length=8
    )
    use_cfg_zero_star: bool | None = None
    use_zero_init: bool | None = None
    zero_steps: int | None = Field(default=None, ge=0, le=100)
    is_amplify_first_chunk: bool | None = None
    is_skip_first_chunk: bool | None = None
    history_sizes: list[int] | None = Field(default=None, max_length=8)
    num_latent_frames_per_chunk: int | None = Field(default=None, ge=1, le=64)
    image_noise_sigma_min: Sigma | None = None
    image_noise_sigma_max: Sigma | None = None
    video_noise_sigma_min: Sigma | None = None
    video_noise_sigma_max: Sigma | None = None
    max_sequence_length: int | None = Field(default=None, ge=1, le=512)
    step_cache: bool | dict[str, Any] | None = None
    """Step caching (cache-dit DBCache): true/false, or an object of its keys (checked by
    `core.step_cache`); not given: the server's --step-cache."""

    @field_validator("step_cache", mode="before")
    @classmethod
    def _step_cache_shape(cls, value: Any) -> Any:
        # form fields are text ("true"); anything else is named here, not as a union branch
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if value is None or isinstance(value, bool | dict):
            return value
        raise ValueError("must be true, false or an object of cache-dit DBCache keys")


KNOWN_KEYS = tuple(HeliosExtraParams.model_fields)


def _safe(text: str, limit: int = 80) -> str:
    """Echo client text in a message without breaking JSON (lone surrogates) or flooding it."""
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_extra_params(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON string or an object → a plain dict (keys and types are checked later).

    An empty string or JSON `null` means no extra params. Malformed JSON is a 400 with the
    position of the error.
    """
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, str):
        raise bad_request(
            "extra_params must be a JSON object or a JSON string of one",
            param="extra_params",
            code="invalid_type",
        )
    if not raw.strip():
        return {}
    try:
        value = loads_strict(raw)
    except JsonTextError as exc:
        raise bad_request(
            f"extra_params is not valid JSON: {_safe(str(exc))}",
            param="extra_params",
            code="invalid_json",
        ) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(
            f"extra_params must be a JSON object, got a JSON {type(value).__name__}",
            param="extra_params",
            code="invalid_type",
        )
    return value


def unflatten_bracket_fields(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`extra_params[key]=v` and `extra_params[key][]=v` (repeated) form fields → a dict."""
    out: dict[str, Any] = {}
    for name, value in items:
        match = _BRACKET.match(name)
        if match is None or not match.group(1) or match.group(2) not in ("", "[]"):
            raise bad_request(
                f"unsupported form field {_safe(name)!r}: use extra_params[key]=value or "
                "extra_params[key][]=item, or send extra_params as one JSON string",
                param="extra_params",
            )
        key, is_list = match.group(1), match.group(2) == "[]"
        param = f"extra_params.{_safe(key)}"
        if is_list:
            previous = out.setdefault(key, [])
            if not isinstance(previous, list):
                raise bad_request(f"{param} given both as a value and a list", param=param)
            previous.append(value)
        elif key in out:
            raise bad_request(
                f"{param} given more than once", param=param, code="duplicate_parameter"
            )
        else:
            out[key] = value
    return out


def validate_extra_params(values: Mapping[str, Any], *, lax: bool = False) -> HeliosExtraParams:
    """Check keys, types and ranges; `lax` parses text values (bracket form fields)."""
    try:
        return HeliosExtraParams.model_validate(dict(values), strict=not lax)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        first = errors[0]
        if first["type"] == "extra_forbidden":
            key = _safe(str(first["loc"][0]))
            raise bad_request(
                f"unknown key '{key}' in extra_params; known keys: {', '.join(KNOWN_KEYS)}",
                param=f"extra_params.{key}",
                code="unknown_parameter",
            ) from exc
        raise api_error_from_validation(errors, prefix="extra_params.") from exc


def _variant_label(model: ModelInfo) -> str:
    return f"the served model '{model.name}' (Helios-{model.variant.value.title()})"


def _unsupported(key: str, message: str) -> ApiError:
    return bad_request(message, param=f"extra_params.{key}", code="unsupported_parameter")


def check_for_model(extra: HeliosExtraParams, model: ModelInfo) -> None:
    """Refuse what the served checkpoint cannot run, naming the key and what would work."""
    pyramid = model.variant is not Variant.BASE
    who = _variant_label(model)
    if extra.pyramid_num_stages is not None and extra.pyramid_num_stages != model.pyramid_stages:
        raise _unsupported(
            "pyramid_num_stages",
            f"{who} samples in {model.pyramid_stages} stage(s); pyramid_num_stages must be "
            f"{model.pyramid_stages} or left out",
        )
    if extra.is_enable_stage2 is not None and extra.is_enable_stage2 != pyramid:
        raise _unsupported(
            "is_enable_stage2",
            f"{who} is single-stage: stage 2 (the pyramid) needs Helios-Mid or Helios-Distilled"
            if not pyramid
            else f"{who} always runs its {model.pyramid_stages}-stage pyramid; "
            "is_enable_stage2 must be true or left out",
        )
    # the step counts and is_amplify_first_chunk are the vocabulary's (core.requests)
    _check_fixed(extra)
    _check_sigmas(extra, model)


def _check_fixed(extra: HeliosExtraParams) -> None:
    """Keys vLLM-Omni passes on but whose only workable value is the trained one."""
    if extra.is_skip_first_chunk:
        raise _unsupported(
            "is_skip_first_chunk", "is_skip_first_chunk is not supported: it must be false"
        )
    if extra.history_sizes is not None and extra.history_sizes != HISTORY_SIZES:
        raise _unsupported(
            "history_sizes",
            f"Helios was trained with history_sizes {HISTORY_SIZES}; no other split works",
        )
    frames = extra.num_latent_frames_per_chunk
    if frames is not None and frames != LATENT_FRAMES_PER_CHUNK:
        raise _unsupported(
            "num_latent_frames_per_chunk",
            f"Helios was trained with {LATENT_FRAMES_PER_CHUNK} latent frames per chunk "
            "(33 video frames); num_latent_frames_per_chunk must be that or left out",
        )


def _check_sigmas(extra: HeliosExtraParams, model: ModelInfo) -> None:
    preset = PRESETS[model.variant]
    for kind, default in (("image", preset.image_noise_sigma), ("video", preset.video_noise_sigma)):
        low = getattr(extra, f"{kind}_noise_sigma_min")
        high = getattr(extra, f"{kind}_noise_sigma_max")
        low = default[0] if low is None else low
        high = default[1] if high is None else high
        if low > high:
            raise bad_request(
                f"{kind}_noise_sigma_min ({low:g}) must not exceed {kind}_noise_sigma_max "
                f"({high:g})",
                param=f"extra_params.{kind}_noise_sigma_min",
            )
