"""What a bare create request gets on the served model, for clients that build a form.

`GET /v1/models` carries it per model as `video_defaults`; the videos page at `/videos` fills
its form from it instead of repeating the presets and size rules in JavaScript.
"""

from __future__ import annotations

from typing import Any

from helios_serve.api.videos.limits import RequestLimits
from helios_serve.api.videos.resolve import preset_for
from helios_serve.api.videos.sizes import MIN_SIDE, TRAINED_SIZE, suggested_sizes
from helios_serve.core.requests import DEFAULT_FPS, DEFAULT_NUM_FRAMES, MAX_PROMPT_CHARS
from helios_serve.core.spec import ModelInfo
from helios_serve.core.types import FRAMES_PER_CHUNK, Variant


def _size(width: int, height: int) -> str:
    return f"{width}x{height}"


def video_defaults(model: ModelInfo, limits: RequestLimits) -> dict[str, Any]:
    """The served variant's preset, sizes and lengths, in the create request's own terms.

    `preset` holds the knobs a request may override: `num_inference_steps` on Base (single
    stage), `pyramid_steps` (vLLM-Omni's `pyramid_num_inference_steps_list`) on Mid and
    Distilled, `guidance_scale`, `use_cfg_zero_star`, and `amplify_first_chunk`
    (`is_amplify_first_chunk`, Distilled only), and `step_cache` where step caching can run
    (the server's default, null for off). Other sizes than `sizes` work too: any even size
    from `min_side` to `max_side`, made at the nearest larger multiple of `size_multiple` and
    cut to it. `max_prompt_chars` caps `prompt` and `negative_prompt`.
    """
    preset = preset_for(model)
    pyramid = model.variant is not Variant.BASE
    knobs: dict[str, Any] = {
        "guidance_scale": preset.guidance_scale,
        "use_cfg_zero_star": preset.use_cfg_zero_star,
        "negative_prompt": preset.negative_prompt,
    }
    if pyramid:
        knobs["pyramid_steps"] = list(preset.pyramid_steps)
    else:
        knobs["num_inference_steps"] = preset.num_inference_steps
    if model.variant is Variant.DISTILLED:
        knobs["amplify_first_chunk"] = preset.amplify_first_chunk
    if model.step_cache_available:  # extra_params.step_cache; null: off unless asked
        knobs["step_cache"] = None if preset.step_cache is None else preset.step_cache.to_json()
    return {
        "variant": model.variant.value,
        "preset": knobs,
        "size": _size(model.default_width, model.default_height),
        "trained_size": _size(*TRAINED_SIZE),
        "sizes": [_size(w, h) for w, h in suggested_sizes(model, limits.max_side)],
        "size_multiple": model.size_multiple,
        "min_side": MIN_SIDE,
        "max_side": limits.max_side,
        "num_frames": DEFAULT_NUM_FRAMES,
        "max_num_frames": limits.max_num_frames,
        "frames_per_chunk": FRAMES_PER_CHUNK,
        "fps": DEFAULT_FPS,
        "max_fps": limits.max_fps,
        "max_reference_bytes": limits.media.max_bytes,
        "max_prompt_chars": MAX_PROMPT_CHARS,
    }
