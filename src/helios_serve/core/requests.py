"""The request vocabulary: every rule that turns what a client asks into sampling settings and a
stream, written once.

Every way in calls these: the job API (create, remix, extend, sync), vLLM-Omni's WebSocket
stream, Reactor sessions and `helios generate`. Each value is checked once, where it enters, and
a bad one raises `RequestError`, which every edge maps to its own wire format (a 400, a
WebSocket `error`, a `command_error`, one line on stderr) with the same message.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, fields
from typing import Any

from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.spec import ModelInfo
from helios_serve.core.step_cache import StepCacheChoice, StepCacheSettings
from helios_serve.core.types import FRAMES_PER_CHUNK, Variant
from helios_serve.errors import InvalidInputError

MAX_PROMPT_CHARS = 32_000
"""OpenAI's limit for a video prompt; negative prompts and session prompts share it."""
MAX_SEED = 2**63 - 1
"""Seeds are 64-bit (`torch.Generator.manual_seed`); -1 asks for a random one."""
MAX_SIDE = 1920
"""Largest width or height: 1920x1088 fits; memory grows with the square of the side."""
DEFAULT_FPS = 24
MAX_FPS = 60
DEFAULT_NUM_FRAMES = 99
"""vLLM-Omni's client default: 3 chunks (OpenAI's default of 4 s at 24 fps makes the same 3)."""
MAX_NUM_FRAMES_STREAMED = FRAMES_PER_CHUNK * 3600
"""A live stream's cap: 3,600 chunks, about 80 minutes at 24 fps (a job's is smaller)."""
TRAINED_SIZE = (640, 384)
MAX_GUIDANCE = 30.0
MAX_STEPS = 200
"""Most single-stage (Base) denoising steps per chunk (its preset is 50)."""
MAX_STAGE_STEPS = 100
"""Most steps per pyramid stage (Mid's preset is 20)."""

_SIZE = re.compile(r"^\s*(\d{1,6})\s*[xX×*]\s*(\d{1,6})\s*$")


class RequestError(InvalidInputError):
    """A request value no edge may accept; `param` names it, `code` says what kind of wrong."""

    def __init__(self, message: str, *, param: str | None, code: str = "invalid_value") -> None:
        super().__init__(message, param=param)
        self.code = code


# ---------------------------------------------------------------------------- text


def check_prompt(value: object, param: str = "prompt", *, required: bool = True) -> str:
    """A prompt (or negative prompt): text up to `MAX_PROMPT_CHARS`, no NUL, valid Unicode."""
    if not isinstance(value, str):
        raise RequestError(f"{param} must be a string", param=param, code="invalid_type")
    if required and not value.strip():
        raise RequestError(f"{param} must not be empty or whitespace", param=param)
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(
            f"{param} is {len(value)} characters, over the limit of {MAX_PROMPT_CHARS}",
            param=param,
        )
    if "\x00" in value:
        raise RequestError(f"{param} must not contain NUL characters", param=param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(
            f"{param} is not valid Unicode text (lone surrogate)", param=param
        ) from None
    return value


# ---------------------------------------------------------------------------- numbers


def whole_number(value: object, param: str) -> int:
    """An integer, also from a float without a fraction (JSON clients send 5.0 for 5)."""
    if isinstance(value, bool):
        raise RequestError(f"{param} must be an integer", param=param, code="invalid_type")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise RequestError(f"{param} must be an integer", param=param, code="invalid_type")
    return value


def check_seed(value: object, param: str = "seed") -> int | None:
    """A seed in 0..2**63-1; None or -1 mean "draw one" (`draw_seed`)."""
    if value is None:
        return None
    seed = whole_number(value, param)
    if seed == -1:
        return None
    if not 0 <= seed <= MAX_SEED:
        raise RequestError(
            f"{param} must be an integer in 0..{MAX_SEED}, or -1 for a random one", param=param
        )
    return seed


def draw_seed() -> int:
    """The one default-seed draw, for every way in (jobs, sessions, streams, the CLI); small
    enough to read back and type in again."""
    return secrets.randbelow(2**32)


def seed_or_draw(value: object, param: str = "seed") -> int:
    """`check_seed`'s seed, or a drawn one where it asks for one (absent or -1)."""
    seed = check_seed(value, param)
    return draw_seed() if seed is None else seed


def check_fps(value: object, param: str = "fps") -> int:
    fps = whole_number(value, param)
    if not 1 <= fps <= MAX_FPS:
        raise RequestError(f"{param} must be an integer in 1..{MAX_FPS}", param=param)
    return fps


def frames_from(
    num_frames: object, seconds: object, fps: int, *, max_frames: int, param: str = "num_frames"
) -> int:
    """Frames asked for: `num_frames`, else whole `seconds` at `fps`, else the default."""
    if num_frames is not None:
        frames = whole_number(num_frames, param)
        if not 1 <= frames <= max_frames:
            raise RequestError(f"{param} must be an integer in 1..{max_frames}", param=param)
        return frames
    if seconds is None or seconds == "":
        return DEFAULT_NUM_FRAMES
    return frames_for_seconds(parse_seconds(seconds), fps, max_frames)


def parse_seconds(value: object, param: str = "seconds") -> int:
    """A length in whole seconds: a positive integer, or its decimal text ("4", "+4")."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\+?\d{1,9}", text) or int(text) < 1:
        raise RequestError(f'{param} must be a positive whole number, e.g. "4"', param=param)
    return int(text)


def frames_for_seconds(seconds: int, fps: int, max_frames: int, param: str = "seconds") -> int:
    """The seconds rule, for every way in: whole `seconds` at `fps` are `seconds × fps`
    frames, refused over `max_frames` (a job's or a stream's cap)."""
    frames = seconds * fps
    if frames > max_frames:
        raise RequestError(
            f"{param}={seconds} at {fps} fps is {frames} frames, over the limit of {max_frames}",
            param=param,
        )
    return frames


# ---------------------------------------------------------------------------- sizes


def nearest_valid(value: int, multiple: int, max_side: int = MAX_SIDE) -> list[int]:
    """The valid sides closest to `value`, below and above (within `multiple`..`max_side`)."""
    top = max_side // multiple * multiple
    below = value // multiple * multiple
    candidates = [below, below + multiple] if below != value else [value]
    valid = [c for c in candidates if multiple <= c <= top]
    return valid or [max(multiple, min(below, top))]


def check_side(
    value: object, name: str, info: ModelInfo, param: str | None = None, max_side: int = MAX_SIDE
) -> int:
    """A width or height the served model can make: a multiple of `info.size_multiple` (16 on
    Base, 64 on the 3-stage pyramid), rejected with the nearest valid values, never floored."""
    where = param or name
    side = whole_number(value, where)
    multiple = info.size_multiple
    if side % multiple == 0 and multiple <= side <= max_side:
        return side
    near = " or ".join(str(v) for v in nearest_valid(side, multiple, max_side))
    if side > max_side:
        why = f"is over the limit of {max_side}"
    elif side < multiple:
        why = f"is below the minimum of {multiple}"
    else:
        kind = f"{info.pyramid_stages}-stage pyramid" if info.pyramid_stages > 1 else "model"
        why = f"is not a multiple of {multiple} (the served {kind} needs multiples of {multiple})"
    raise RequestError(
        f"{name} {side} {why}; nearest valid {name}: {near} (640x384 is the trained size)",
        param=where,
    )


def parse_size(text: str, param: str = "size") -> tuple[int, int]:
    """`"WIDTHxHEIGHT"` → (width, height), unchecked."""
    match = _SIZE.match(text)
    if match is None:
        raise RequestError("size must be WIDTHxHEIGHT, e.g. '640x384'", param=param)
    return int(match.group(1)), int(match.group(2))


def frame_size(
    info: ModelInfo,
    width: object = None,
    height: object = None,
    size: str | None = None,
) -> tuple[int, int]:
    """(width, height): `size` if given, else width/height, each defaulting to the model's."""
    param_w, param_h = "width", "height"
    if size is not None and size.strip():
        width, height = parse_size(size)
        param_w = param_h = "size"
    w = info.default_width if width is None else check_side(width, "width", info, param_w)
    h = info.default_height if height is None else check_side(height, "height", info, param_h)
    return w, h


# ---------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SamplingChoices:
    """What a client may choose about sampling; None means the served variant's preset."""

    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    pyramid_steps: tuple[int, ...] | None = None
    use_cfg_zero_star: bool | None = None
    use_zero_init: bool | None = None
    zero_steps: int | None = None
    amplify_first_chunk: bool | None = None
    negative_prompt: str | None = None
    max_sequence_length: int | None = None
    image_noise_sigma: tuple[float, float] | None = None
    video_noise_sigma: tuple[float, float] | None = None
    step_cache: StepCacheChoice = None


def sampling_settings(
    info: ModelInfo, choices: SamplingChoices, preset: Variant | None = None
) -> SamplingSettings:
    """The preset (of `preset`, default the served variant) with the client's choices, refused
    where the served checkpoint cannot run them."""
    variant = preset or info.variant
    if (variant is Variant.BASE) != (info.variant is Variant.BASE):
        kind = "single-stage" if variant is Variant.BASE else "pyramid"
        raise RequestError(
            f"preset '{variant}' needs a {kind} checkpoint; the served one is {info.variant}",
            param="preset",
            code="unsupported_parameter",
        )
    base = PRESETS[variant]
    _check_ranges(choices)
    if choices.num_inference_steps is not None and info.variant is not Variant.BASE:
        raise RequestError(
            f"num_inference_steps sets single-stage (Base) sampling; the served model "
            f"'{info.name}' samples in {info.pyramid_stages} pyramid stages: set "
            "pyramid_num_inference_steps_list instead (one count per stage)",
            param="num_inference_steps",
            code="unsupported_parameter",
        )
    steps = base.pyramid_steps
    if info.variant is not Variant.BASE and len(steps) != info.pyramid_stages:
        steps = (steps[0],) * max(1, info.pyramid_stages)
    if choices.pyramid_steps is not None:
        if info.variant is Variant.BASE:
            raise RequestError(
                "pyramid_num_inference_steps_list needs a pyramid model; the served one is "
                "single-stage: use num_inference_steps",
                param="pyramid_num_inference_steps_list",
                code="unsupported_parameter",
            )
        if len(choices.pyramid_steps) != info.pyramid_stages:
            raise RequestError(
                f"pyramid_num_inference_steps_list needs {info.pyramid_stages} values (one per "
                f"stage of the served model), got {len(choices.pyramid_steps)}",
                param="pyramid_num_inference_steps_list",
            )
        steps = choices.pyramid_steps
    if choices.amplify_first_chunk and info.variant is not Variant.DISTILLED:
        raise RequestError(
            "is_amplify_first_chunk needs Helios-Distilled (a DMD checkpoint); the served one is "
            f"{info.variant}",
            param="is_amplify_first_chunk",
            code="unsupported_parameter",
        )
    if choices.negative_prompt is not None:
        check_prompt(choices.negative_prompt, "negative_prompt", required=False)
    changes: dict[str, Any] = {
        f.name: getattr(choices, f.name)
        for f in fields(choices)
        if getattr(choices, f.name) is not None and f.name not in ("pyramid_steps", "step_cache")
    }
    changes["pyramid_steps"] = steps
    changes["step_cache"] = step_cache_for(info, choices.step_cache)
    changes.setdefault("max_sequence_length", info.default_max_sequence_length)
    return base.with_overrides(**changes)


def step_cache_for(info: ModelInfo, choice: StepCacheChoice) -> StepCacheSettings | None:
    """The step cache a stream gets: the client's choice, else the server's default; refused
    where it cannot run (Distilled's 1-2 steps per stage leave no neighbouring step to reuse)."""
    if choice is None:
        return info.step_cache_default if info.step_cache_available else None
    if choice is False:
        return None
    if not info.step_cache_available:
        why = (
            "Helios-Distilled samples 1-2 steps per stage: no neighbouring step to reuse; "
            "step caching is for Helios-Base and Helios-Mid"
            if info.variant is Variant.DISTILLED
            else "this server has no step cache (install helios-serve[cache] for cache-dit)"
        )
        raise RequestError(
            f"step_cache is not available for the served model '{info.name}': {why}",
            param="step_cache",
            code="unsupported_parameter",
        )
    if choice is True:
        return info.step_cache_default or StepCacheSettings()
    return choice


def _check_ranges(choices: SamplingChoices) -> None:
    guidance = choices.guidance_scale
    if guidance is not None and not 0.0 <= guidance <= MAX_GUIDANCE:
        raise RequestError(
            f"guidance_scale must be a number in 0..{MAX_GUIDANCE:g}", param="guidance_scale"
        )
    steps = choices.num_inference_steps
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise RequestError(
            f"num_inference_steps must be an integer in 1..{MAX_STEPS}", param="num_inference_steps"
        )
    stages = choices.pyramid_steps
    if stages is not None and not all(1 <= s <= MAX_STAGE_STEPS for s in stages):
        raise RequestError(
            f"pyramid_num_inference_steps_list values must be integers in 1..{MAX_STAGE_STEPS}",
            param="pyramid_num_inference_steps_list",
        )
