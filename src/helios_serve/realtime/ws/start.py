"""`session.start` and `session.interaction` of `WS /v1/realtime/video`, checked strictly.

The values themselves (prompt, seed, size, frames, steps, guidance) are checked by the request
vocabulary (`core.requests`), as on every other way in; this module knows only the message
shapes: `extra_params` takes only the Helios keys listed in `ExtraParams`; vLLM-Omni's
`sampling_params` object may carry the same sampling fields (a field given in both places is
refused); `image_reference` (`{"image_url": "data:..."}`) starts the stream as I2V; `model`,
when given, must name the served model.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from helios_serve.core.requests import (
    DEFAULT_FPS,
    MAX_NUM_FRAMES_STREAMED,
    RequestError,
    SamplingChoices,
    check_fps,
    check_prompt,
    frame_size,
    frames_from,
    sampling_settings,
    seed_or_draw,
    whole_number,
)
from helios_serve.core.spec import ModelInfo, StreamRequest, chunks_for
from helios_serve.core.types import FRAMES_PER_CHUNK
from helios_serve.errors import InvalidInputError
from helios_serve.media.data_url import decode_data_url
from helios_serve.media.decode import load_image
from helios_serve.media.limits import MediaLimits

REFERENCE_LIMITS = MediaLimits()


class WsError(Exception):
    def __init__(self, code: str, message: str, **fields: str) -> None:
        """`fields` go into the `error` message beside code and message (e.g. the
        `request_id` and `event_id` a client needs to match an `event_id_conflict`)."""
        super().__init__(message)
        self.code = code
        self.fields = fields


class ExtraParams(BaseModel):
    """The Helios keys of `extra_params` accepted here; anything else is refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    pyramid_num_inference_steps_list: list[int] | None = Field(
        default=None, min_length=1, max_length=8
    )
    is_amplify_first_chunk: bool | None = None
    use_cfg_zero_star: bool | None = None
    use_zero_init: bool | None = None
    zero_steps: int | None = Field(default=None, ge=0, le=100)
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    max_sequence_length: int | None = Field(default=None, ge=1, le=512)
    playback_fps: float | None = Field(default=None, ge=1, le=240)
    """Pins the rate the client plays at (up to `fps`); absent, it follows the engine."""


class SamplingParams(ExtraParams):
    """vLLM-Omni's `sampling_params`: the same knobs, plus the seed and negative prompt."""

    seed: int | None = None
    negative_prompt: str | None = None


class ImageReference(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    image_url: str


class StartMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    type: str
    prompt: str
    model: str | None = None
    format: str = "m4s"
    width: int | None = None
    height: int | None = None
    size: str | None = Field(default=None, max_length=32)
    """`WxH`, as vLLM-Omni's client sends it; overrides width/height."""
    seconds: str | int | None = None
    """With `fps`, gives `num_frames` when that is absent (OpenAI / vLLM-Omni style)."""
    fps: int = DEFAULT_FPS
    num_frames: int | None = None
    seed: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    num_inference_steps: int | None = None
    extra_params: ExtraParams = ExtraParams()
    sampling_params: SamplingParams | None = None
    image_reference: ImageReference | None = None


@dataclass(frozen=True)
class Plan:
    request: StreamRequest
    fps: int
    chunks: int
    config: dict[str, Any]
    playback_fps: float | None = None
    """The rate the session pinned its playback to; None follows the engine."""


def _merged(start: StartMessage) -> dict[str, Any]:
    """Top-level, `extra_params` and `sampling_params` fields in one dict; each once."""
    out: dict[str, Any] = {}
    sources: list[tuple[str, dict[str, Any]]] = [
        ("", start.model_dump(include={"seed", "guidance_scale", "negative_prompt",
                                        "num_inference_steps"}, exclude_none=True)),
        ("extra_params.", start.extra_params.model_dump(exclude_none=True)),
    ]  # fmt: skip
    if start.sampling_params is not None:
        sources.append(("sampling_params.", start.sampling_params.model_dump(exclude_none=True)))
    for prefix, values in sources:
        for key, value in values.items():
            if key in out:
                raise WsError("invalid_parameter", f"{prefix}{key} is given twice")
            out[key] = value
    return out


def _choices(values: dict[str, Any]) -> SamplingChoices:
    steps = values.get("pyramid_num_inference_steps_list")
    return SamplingChoices(
        guidance_scale=values.get("guidance_scale"),
        num_inference_steps=values.get("num_inference_steps"),
        pyramid_steps=None if steps is None else tuple(steps),
        use_cfg_zero_star=values.get("use_cfg_zero_star"),
        use_zero_init=values.get("use_zero_init"),
        zero_steps=values.get("zero_steps"),
        amplify_first_chunk=values.get("is_amplify_first_chunk"),
        negative_prompt=values.get("negative_prompt"),
        max_sequence_length=values.get("max_sequence_length"),
    )


def _image(reference: ImageReference | None) -> npt.NDArray[np.uint8] | None:
    if reference is None:
        return None
    data = decode_data_url(reference.image_url, REFERENCE_LIMITS.max_bytes, "image_reference")
    return np.asarray(load_image(data, REFERENCE_LIMITS, param="image_reference"))


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
    try:
        return _plan(start, info)
    except RequestError as exc:
        raise WsError(_ws_code(exc), exc.message) from exc
    except InvalidInputError as exc:  # the reference image
        raise WsError("invalid_image_reference", exc.message) from exc


def _ws_code(exc: RequestError) -> str:
    """This socket's error codes for the vocabulary's refusals."""
    if exc.param in ("width", "height", "size"):
        return "invalid_size"
    return "unsupported_parameter" if exc.code == "unsupported_parameter" else "invalid_parameter"


def _plan(start: StartMessage, info: ModelInfo) -> Plan:
    prompt = check_prompt(start.prompt)
    width, height = frame_size(info, start.width, start.height, start.size)
    fps = check_fps(start.fps)
    num_frames = frames_from(
        start.num_frames, start.seconds, fps, max_frames=MAX_NUM_FRAMES_STREAMED
    )
    values = _merged(start)
    seed = seed_or_draw(values.get("seed"))
    settings = sampling_settings(info, _choices(values))
    chunks = chunks_for(num_frames)
    image = _image(start.image_reference)
    request = StreamRequest(prompt, height, width, seed, settings, image=image)
    config = {
        "model": info.name, "prompt": prompt, "width": width, "height": height,
        "fps": fps, "num_frames": chunks * FRAMES_PER_CHUNK, "num_chunks": chunks,
        "frames_per_chunk": FRAMES_PER_CHUNK, "seed": seed,
        "guidance_scale": settings.guidance_scale, "negative_prompt": settings.negative_prompt,
        "extra_params": start.extra_params.model_dump(exclude_none=True),
        "mode": "i2v" if image is not None else "t2v",
    }  # fmt: skip
    return Plan(request, fps, chunks, config, start.extra_params.playback_fps)


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
    try:
        prompt = check_prompt(event.get("prompt"), "event.prompt")
        blend = whole_number(body.get("transition_chunks", default_blend), "transition_chunks")
    except RequestError as exc:
        raise WsError("invalid_interaction", exc.message) from exc
    if not 0 <= blend <= 64:
        raise WsError("invalid_interaction", "transition_chunks must be an integer 0..64")
    return Interaction(event_id, prompt, max(1, blend))
