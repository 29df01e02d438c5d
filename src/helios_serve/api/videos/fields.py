"""The top-level create fields: their types, fixed ranges and the checks that need no media."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from helios_serve.api.videos.extra import KNOWN_KEYS, HeliosExtraParams
from helios_serve.api.videos.limits import RequestLimits
from helios_serve.api.videos.reference import ReferenceMedia
from helios_serve.core.requests import frames_for_seconds, parse_seconds
from helios_serve.core.spec import ModelInfo
from helios_serve.web.errors import bad_request

logger = logging.getLogger(__name__)


def _seconds_text(value: Any) -> Any:
    """OpenAI sends `seconds` as a string ("4"); JSON clients may send the integer 4."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    raise PydanticCustomError(
        "seconds_type", 'seconds must be a string or an integer of whole seconds, e.g. "4"'
    )


class CreateFields(BaseModel):
    """Types and fixed ranges of the top-level fields; limits and model rules come after."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)  # reject_unknown ran first

    prompt: str
    model: str | None = None
    size: str | None = Field(default=None, max_length=64)
    seconds: Annotated[str | None, BeforeValidator(_seconds_text)] = None
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    num_frames: int | None = Field(default=None, ge=1)
    fps: int | None = Field(default=None, ge=1)
    seed: int | None = None
    """Checked by the vocabulary (`check_seed`): 0..2**63-1, or -1 for a random one."""
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    """Ranges of both are the vocabulary's (`core.requests.sampling_settings`)."""
    negative_prompt: str | None = None


KNOWN_FIELDS = frozenset(CreateFields.model_fields) | {
    "extra_params",
    "input_reference",
    "image_reference",
    "video_reference",
}


@dataclass(frozen=True)
class VideoCreateRequest:
    """A create request that passed every check; None means "not given" (defaults apply)."""

    prompt: str
    model: str | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: int | None = None
    seconds: int | None = None
    seed: int | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    negative_prompt: str | None = None
    extra: HeliosExtraParams = field(default_factory=HeliosExtraParams)
    reference: ReferenceMedia | None = None
    output_size: tuple[int, int] | None = None
    """An OpenAI size literal generated larger (width/height) and cropped to this."""


def check_model(name: str | None, model: ModelInfo) -> str | None:
    if name is None or not name.strip():
        return None
    if model.answers_to(name):
        return name
    names = ", ".join(repr(n) for n in (model.name, *model.aliases))
    shown = name[:100].encode("utf-8", "backslashreplace").decode()
    raise bad_request(
        f"model mismatch: {shown!r} is not served here; this server serves {names}",
        param="model",
        code="model_not_found",
    )


def check_seconds(value: str | None, fps: int, limits: RequestLimits) -> int | None:
    """Whole seconds, checked by the seconds rule (`core.requests`); None when absent."""
    if value is None or value == "":
        return None
    seconds = parse_seconds(value)
    frames_for_seconds(seconds, fps, limits.max_num_frames)
    return seconds


def check_ranges(fields: CreateFields, limits: RequestLimits) -> None:
    if fields.num_frames is not None and fields.num_frames > limits.max_num_frames:
        raise bad_request(
            f"num_frames must be at most {limits.max_num_frames}, got {fields.num_frames}",
            param="num_frames",
        )
    if fields.fps is not None and fields.fps > limits.max_fps:
        raise bad_request(f"fps must be at most {limits.max_fps}, got {fields.fps}", param="fps")


REFERENCE_FIELDS = ("input_reference", "image_reference", "video_reference")
"""OpenAI's `input_reference` and vLLM-Omni's JSON spellings (`{"image_url": "data:..."}`)."""

REFUSED = {
    "file_id": "files by id are not supported: upload the file as input_reference or send a "
    "data: URL",
    "audio_reference": "audio references are not supported: Helios makes silent video",
    "lora": "LoRA adapters are not supported by this server",
    "loras": "LoRA adapters are not supported by this server",
}


def reject_unknown(raw: Mapping[str, Any]) -> None:
    """Every field is understood or refused by name: nothing is dropped without a word."""
    for key in sorted(str(k) for k in raw if k not in KNOWN_FIELDS):
        shown = key[:100]
        if key in KNOWN_KEYS:
            raise bad_request(
                f"{shown} is a Helios parameter: send it inside extra_params",
                param=shown,
                code="unknown_parameter",
            )
        if key in REFUSED:
            raise bad_request(REFUSED[key], param=shown, code="unsupported_parameter")
        raise bad_request(
            f"unknown parameter {shown!r}; known: {', '.join(sorted(KNOWN_FIELDS))}",
            param=shown,
            code="unknown_parameter",
        )
