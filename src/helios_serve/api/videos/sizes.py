"""Frame sizes: what Helios generates (multiples of `8 * 2**stages` pixels) and what a client
may ask for (any even size within the limits, generated at the nearest larger one and cut).

The VAE downsamples 8x and the transformer patches 2x2, so a single-stage model (Base) makes
multiples of 16; a pyramid halves the latent twice more (3 stages: multiples of 64). 640x384 is
the only trained size and fits both.
"""

from __future__ import annotations

from dataclasses import dataclass

from helios_serve.core.requests import (
    MAX_SIDE,
    TRAINED_SIZE,
    RequestError,
    parse_size,
    whole_number,
)
from helios_serve.core.spec import ModelInfo

__all__ = [
    "MAX_SIDE",
    "MIN_SIDE",
    "TRAINED_SIZE",
    "FittedSize",
    "check_size",
    "fit_size",
    "is_valid_size",
    "suggested_sizes",
]

_COMMON_SIZES = ((320, 192), (384, 640), (512, 512), (960, 576), (1280, 768))
"""Sizes worth offering besides the trained and the default one: half, portrait, square,
1.5x and 2x of the trained size (all multiples of 64, so every variant can run them)."""


MIN_SIDE = 16
"""Smallest width or height a video can be asked at (it is generated at the model's smallest
size and cut)."""


@dataclass(frozen=True)
class FittedSize:
    """A size as asked, and the size it is generated at: the smallest the model can make that
    contains it. `output` is the asked size when the two differ (the frames are cut to it
    around their centre), else None."""

    width: int
    height: int
    output: tuple[int, int] | None = None


def covering_size(width: int, height: int, model: ModelInfo) -> tuple[int, int]:
    """The smallest size the model can make that contains (width, height)."""
    m = model.size_multiple
    return -(-width // m) * m, -(-height // m) * m


def fit_size(width: int, height: int, model: ModelInfo) -> FittedSize:
    """Any (checked) size: generated at `covering_size`, cut to what was asked."""
    made = covering_size(width, height, model)
    return FittedSize(*made, output=None if made == (width, height) else (width, height))


def _side(value: object, name: str, param: str, max_side: int) -> int:
    side = whole_number(value, param)
    if not MIN_SIDE <= side <= max_side:
        raise RequestError(
            f"{name} {side} is outside {MIN_SIDE}..{max_side} (640x384 is the trained size)",
            param=param,
        )
    if side % 2:
        raise RequestError(
            f"{name} {side} is odd; H.264 video (yuv420p) needs even sides: "
            f"{side - 1} or {side + 1}",
            param=param,
        )
    return side


def check_size(
    size: str | None, width: object, height: object, model: ModelInfo, max_side: int
) -> FittedSize | None:
    """`size` ("WxH", overriding width/height) or width/height → the size generated and the one
    delivered; None when neither is given (the model's default applies). Any even size in
    `MIN_SIDE..max_side` is served: one the model cannot make directly (a side that is no
    multiple of `model.size_multiple`, like OpenAI's 1280x720 on a pyramid model) is generated
    at the smallest size containing it and cut to it (`fit_size`)."""
    param_w, param_h = "width", "height"
    if size is not None and size.strip():
        width, height = parse_size(size)
        param_w = param_h = "size"
    if width is None and height is None:
        return None
    w = model.default_width if width is None else _side(width, "width", param_w, max_side)
    h = model.default_height if height is None else _side(height, "height", param_h, max_side)
    return fit_size(w, h, model)


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
