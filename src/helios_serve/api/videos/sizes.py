"""Frame sizes Helios can generate: multiples of `8 * 2**stages` pixels, rejected (not floored).

The VAE downsamples 8x and the transformer patches 2x2, so a single-stage model (Base) needs
multiples of 16; a pyramid halves the latent twice more (3 stages: multiples of 64). 640x384 is
the only trained size and fits both.
"""

from __future__ import annotations

import re

from helios_serve.core.spec import ModelInfo
from helios_serve.web.errors import bad_request

_SIZE = re.compile(r"^\s*(\d{1,6})\s*[xX×*]\s*(\d{1,6})\s*$")

TRAINED_SIZE = (640, 384)
"""The one size every Helios checkpoint was trained at (width, height)."""

_COMMON_SIZES = ((320, 192), (384, 640), (512, 512), (960, 576), (1280, 768))
"""Sizes worth offering besides the trained and the default one: half, portrait, square,
1.5x and 2x of the trained size (all multiples of 64, so every variant can run them)."""


def nearest_valid(value: int, multiple: int, max_side: int) -> list[int]:
    """The valid sides closest to `value`, below and above (within 1..max_side)."""
    below = value // multiple * multiple
    candidates = [below, below + multiple] if below != value else [value]
    valid = [c for c in candidates if multiple <= c <= max_side // multiple * multiple]
    return valid or [max(multiple, min(below, max_side // multiple * multiple))]


def _check_side(value: int, name: str, param: str, model: ModelInfo, max_side: int) -> None:
    multiple = model.size_multiple
    if value % multiple == 0 and multiple <= value <= max_side:
        return
    near = " or ".join(str(v) for v in nearest_valid(value, multiple, max_side))
    if value > max_side:
        why = f"is over the limit of {max_side}"
    elif value < multiple:
        why = f"is below the minimum of {multiple}"
    else:
        kind = f"{model.pyramid_stages}-stage pyramid" if model.pyramid_stages > 1 else "model"
        why = f"is not a multiple of {multiple} (the served {kind} needs multiples of {multiple})"
    trained = "x".join(map(str, TRAINED_SIZE))
    raise bad_request(
        f"{name} {value} {why}; nearest valid {name}: {near} ({trained} is the trained size)",
        param=param,
    )


def check_size(
    size: str | None, width: int | None, height: int | None, model: ModelInfo, max_side: int
) -> tuple[int | None, int | None]:
    """`size` ("WxH", overriding width/height) or width/height → checked (width, height)."""
    param_w, param_h = "width", "height"
    if size is not None and size.strip():
        match = _SIZE.match(size)
        if match is None:
            raise bad_request("size must be WIDTHxHEIGHT, e.g. '640x384'", param="size")
        width, height = int(match.group(1)), int(match.group(2))
        param_w = param_h = "size"
    if width is not None:
        _check_side(width, "width", param_w, model, max_side)
    if height is not None:
        _check_side(height, "height", param_h, model, max_side)
    return width, height


def is_valid_size(width: int, height: int, model: ModelInfo, max_side: int) -> bool:
    multiple = model.size_multiple
    return all(v % multiple == 0 and multiple <= v <= max_side for v in (width, height))


def suggested_sizes(model: ModelInfo, max_side: int) -> list[tuple[int, int]]:
    """Sizes a form can offer: the trained size first, then the model's default, then common
    ones; only those the served model can run. Any other valid size is accepted as well."""
    default = (model.default_width, model.default_height)
    out: list[tuple[int, int]] = []
    for size in (TRAINED_SIZE, default, *_COMMON_SIZES):
        if size not in out and is_valid_size(*size, model, max_side):
            out.append(size)
    return out
