"""`session.start` and `session.interaction` of `WS /v1/realtime/video`, checked strictly.

Validation here is the socket's own (the realtime layer does not import the HTTP API): sizes
follow the same rule as `/v1/videos` (multiples of `ModelInfo.size_multiple`),
`extra_params` takes only the Helios keys listed in `ExtraParams`, and `model`, when given,
must name the served model. Sampling settings are the served variant's preset with overrides.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.core.types import FRAMES_PER_CHUNK, Variant

MAX_SIDE = 2048
DEFAULT_NUM_FRAMES = 99
Steps = Annotated[int, Field(ge=1, le=100)]


class WsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ExtraParams(BaseModel):
    """The Helios keys of `extra_params` accepted here; anything else is refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    pyramid_num_inference_steps_list: list[Steps] | None = Field(
        default=None, min_length=1, max_length=8
    )
    is_amplify_first_chunk: bool | None = None
    use_cfg_zero_star: bool | None = None
    use_zero_init: bool | None = None
    zero_steps: int | None = Field(default=None, ge=0, le=100)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    num_inference_steps: Steps | None = None
    max_sequence_length: int | None = Field(default=None, ge=1, le=512)


class StartMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    type: str
    prompt: str = Field(min_length=1, max_length=20_000)
    model: str | None = None
    format: str = "m4s"
    width: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    height: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    size: str | None = Field(default=None, pattern=r"^[0-9]{1,5}x[0-9]{1,5}$")
    """`WxH`, as vLLM-Omni's client sends it; overrides width/height."""
    seconds: str | int | None = None
    """With `fps`, gives `num_frames` when that is absent (OpenAI / vLLM-Omni style)."""
    fps: int = Field(default=24, ge=1, le=120)
    num_frames: int | None = Field(default=None, ge=1, le=FRAMES_PER_CHUNK * 3600)
    seed: int | None = Field(default=None, ge=-1, le=2**31 - 1)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    negative_prompt: str | None = Field(default=None, max_length=20_000)
    num_inference_steps: Steps | None = None
    extra_params: ExtraParams = ExtraParams()


@dataclass(frozen=True)
class Plan:
    request: StreamRequest
    fps: int
    chunks: int
    config: dict[str, Any]


def _size(value: int | None, default: int, name: str, info: ModelInfo) -> int:
    multiple = info.size_multiple
    side = default if value is None else value
    if side % multiple or side < multiple:
        raise WsError("invalid_size", f"{name} {side} must be a multiple of {multiple} here")
    return side


def _num_frames(start: StartMessage) -> int:
    if start.num_frames is not None:
        return start.num_frames
    if start.seconds is None:
        return DEFAULT_NUM_FRAMES
    text = str(start.seconds).strip()
    if not text.isdigit() or not 0 < int(text) <= 3600:
        raise WsError("invalid_parameter", "seconds must be a positive whole number up to 3600")
    return int(text) * start.fps


def _settings(start: StartMessage, info: ModelInfo) -> SamplingSettings:
    preset, extra = PRESETS[info.variant], start.extra_params
    steps = preset.pyramid_steps
    if len(steps) != info.pyramid_stages:
        steps = (steps[0],) * max(1, info.pyramid_stages)
    wanted = extra.pyramid_num_inference_steps_list
    if wanted is not None:
        if info.variant is Variant.BASE:
            raise WsError("unsupported_parameter", "single-stage model: use num_inference_steps")
        if len(wanted) != len(steps):
            raise WsError(
                "invalid_parameter",
                f"pyramid_num_inference_steps_list needs {len(steps)} values, got {len(wanted)}",
            )
        steps = tuple(wanted)
    if extra.is_amplify_first_chunk and info.variant is not Variant.DISTILLED:
        raise WsError("unsupported_parameter", "is_amplify_first_chunk needs Helios-Distilled")
    changes: dict[str, object] = {
        "pyramid_steps": steps,
        "max_sequence_length": extra.max_sequence_length or info.default_max_sequence_length,
        "guidance_scale": extra.guidance_scale
        if start.guidance_scale is None
        else start.guidance_scale,
        "num_inference_steps": start.num_inference_steps or extra.num_inference_steps,
        "negative_prompt": start.negative_prompt,
        "use_cfg_zero_star": extra.use_cfg_zero_star,
        "use_zero_init": extra.use_zero_init,
        "zero_steps": extra.zero_steps,
        "amplify_first_chunk": extra.is_amplify_first_chunk,
    }
    return preset.with_overrides(**{k: v for k, v in changes.items() if v is not None})


def plan_session(raw: dict[str, Any], info: ModelInfo) -> Plan:
    """Validate a `session.start` against the served model; `WsError` says what is wrong."""
    try:
        start = StartMessage.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        code = "unknown_parameter" if first["type"] == "extra_forbidden" else "invalid_parameter"
        raise WsError(code, f"{where}: {first['msg']}") from exc
    if start.format != "m4s":
        raise WsError("unsupported_format", f"format {start.format[:40]!r}: only 'm4s' is served")
    if start.model is not None and not info.answers_to(start.model):
        raise WsError("model_not_found", f"model {start.model[:200]!r} is not served here")
    wanted_w, wanted_h = start.width, start.height
    if start.size is not None:
        wanted_w, wanted_h = (int(v) for v in start.size.split("x"))
    width = _size(wanted_w, info.default_width, "width", info)
    height = _size(wanted_h, info.default_height, "height", info)
    num_frames = _num_frames(start)
    seed = start.seed if start.seed is not None and start.seed >= 0 else random.randrange(2**31)
    settings = _settings(start, info)
    chunks = math.ceil(num_frames / FRAMES_PER_CHUNK)
    request = StreamRequest(start.prompt, height, width, seed, settings)
    config = {
        "model": info.name, "prompt": start.prompt, "width": width, "height": height,
        "fps": start.fps, "num_frames": chunks * FRAMES_PER_CHUNK, "num_chunks": chunks,
        "frames_per_chunk": FRAMES_PER_CHUNK, "seed": seed,
        "guidance_scale": settings.guidance_scale, "negative_prompt": settings.negative_prompt,
        "extra_params": start.extra_params.model_dump(exclude_none=True),
    }  # fmt: skip
    return Plan(request, start.fps, chunks, config)


@dataclass
class Interaction:
    event_id: str
    prompt: str
    blend: int
    last_chunk: int = -1


def parse_interaction(msg: dict[str, Any], default_blend: int) -> Interaction:
    body = msg.get("interaction")
    event = body.get("event") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(event, dict):
        raise WsError("invalid_interaction", "session.interaction needs interaction.event")
    event_id = body.get("event_id", uuid.uuid4().hex)
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 256:
        raise WsError("invalid_interaction", "event_id must be a string of 1 to 256 characters")
    prompt = event.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 20_000:
        raise WsError("invalid_interaction", "session.interaction needs a non-empty event.prompt")
    blend = body.get("transition_chunks", default_blend)
    if isinstance(blend, bool) or not isinstance(blend, int) or not 0 <= blend <= 64:
        raise WsError("invalid_interaction", "transition_chunks must be an integer 0..64")
    return Interaction(event_id, prompt, max(1, blend))
