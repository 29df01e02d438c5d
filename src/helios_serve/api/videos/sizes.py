"""Frame sizes Helios can generate: multiples of `8 * 2**stages` pixels, rejected (not floored).

The VAE downsamples 8x and the transformer patches 2x2, so a single-stage model (Base) needs
multiples of 16; a pyramid halves the latent twice more (3 stages: multiples of 64). 640x384 is
the only trained size and fits both.
"""

from __future__ import annotations

from helios_serve.core.requests import MAX_SIDE, TRAINED_SIZE, check_side, parse_size
from helios_serve.core.spec import ModelInfo

__all__ = ["MAX_SIDE", "TRAINED_SIZE", "check_size", "is_valid_size", "suggested_sizes"]

_COMMON_SIZES = ((320, 192), (384, 640), (512, 512), (960, 576), (1280, 768))
"""Sizes worth offering besides the trained and the default one: half, portrait, square,
1.5x and 2x of the trained size (all multiples of 64, so every variant can run them)."""


OPENAI_SIZES = frozenset({(720, 1280), (1280, 720), (1024, 1792), (1792, 1024)})
"""OpenAI's size literals: always served, cropped from the nearest larger valid size when the
served model cannot make them directly (720 is no multiple of 64 on a pyramid model)."""


def covering_size(width: int, height: int, model: ModelInfo) -> tuple[int, int]:
    """The smallest size the model can make that contains (width, height)."""
    m = model.size_multiple
    return -(-width // m) * m, -(-height // m) * m


def openai_literal(size: str | None, model: ModelInfo) -> tuple[int, int] | None:
    """(width, height) of an OpenAI size literal the model cannot make directly, else None."""
    if size is None or not size.strip():
        return None
    asked = parse_size(size)
    if asked in OPENAI_SIZES and covering_size(*asked, model) != asked:
        return asked
    return None


def check_size(
    size: str | None, width: int | None, height: int | None, model: ModelInfo, max_side: int
) -> tuple[int | None, int | None]:
    """`size` ("WxH", overriding width/height) or width/height → checked (width, height);
    None stays None (the model's default applies). An OpenAI literal the model cannot make
    directly gives the size it is generated at (see `openai_literal`)."""
    param_w, param_h = "width", "height"
    if (literal := openai_literal(size, model)) is not None:
        return covering_size(*literal, model)
    if size is not None and size.strip():
        width, height = parse_size(size)
        param_w = param_h = "size"
    if width is not None:
        width = check_side(width, "width", model, param_w, max_side)
    if height is not None:
        height = check_side(height, "height", model, param_h, max_side)
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
