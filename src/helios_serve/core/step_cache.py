"""Step caching settings: cache-dit's DBCache, as a request or the server asks for it.

Neighbouring denoising steps of Base (50 steps) and Mid (3 x 20) change the transformer's
hidden states little. DBCache always runs the first `Fn` blocks (and the last `Bn`), compares
what the first ones changed with the previous step, and while the relative change stays under
`residual_diff_threshold` reuses the middle blocks' residual from the last full step instead of
running them (at most `max_continuous_cached_steps` in a row, never in the first
`max_warmup_steps` steps of a stage). The engine resets this state at every chunk and pyramid
stage, so it is never part of a saved stream state.

The JSON names are vLLM-Omni's `cache_config` keys for its cache-dit backend; the defaults are
its defaults (F1B0, 4 warm-up steps, threshold 0.24, 3 cached steps in a row at most).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from helios_serve.errors import InvalidInputError

PARAM = "step_cache"


class StepCacheError(InvalidInputError):
    """A step cache setting no edge may accept (maps to a 400 like a `RequestError`)."""

    def __init__(self, message: str, *, param: str = PARAM, code: str = "invalid_value") -> None:
        super().__init__(message, param=param)
        self.code = code


@dataclass(frozen=True)
class StepCacheSettings:
    """DBCache's knobs (see the module doc), named as vLLM-Omni and cache-dit name them."""

    Fn_compute_blocks: int = 1
    Bn_compute_blocks: int = 0
    residual_diff_threshold: float = 0.24
    max_warmup_steps: int = 4
    max_cached_steps: int = -1
    """Most cached steps per stage; -1: no limit."""
    max_continuous_cached_steps: int = 3
    """Most cached steps in a row; -1: no limit."""

    def __post_init__(self) -> None:
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not low <= value <= high:
                raise StepCacheError(
                    f"{PARAM}.{name} must be in {low:g}..{high:g}, got {value!r}",
                    param=f"{PARAM}.{name}",
                )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], base: StepCacheSettings | None = None
    ) -> StepCacheSettings:
        """Settings from vLLM-Omni's keys; keys not given keep `base`'s values (the defaults)."""
        values = (base or cls()).to_json()
        for key, value in data.items():
            if key not in FIELDS:
                raise StepCacheError(
                    f"unknown key '{key}' in {PARAM}; known keys: {', '.join(FIELDS)}",
                    param=f"{PARAM}.{key}",
                    code="unknown_parameter",
                )
            values[key] = _typed(key, value)
        return cls(**values)

    def describe(self) -> str:
        """cache-dit's own short name: F1B0_W4MC3_R0.24 (max cached steps when limited)."""
        cap = "" if self.max_cached_steps < 0 else f"M{self.max_cached_steps}"
        return (
            f"F{self.Fn_compute_blocks}B{self.Bn_compute_blocks}_W{self.max_warmup_steps}"
            f"{cap}MC{self.max_continuous_cached_steps}_R{self.residual_diff_threshold:g}"
        )


FIELDS = tuple(f.name for f in fields(StepCacheSettings))
_RANGES: dict[str, tuple[float, float]] = {
    "Fn_compute_blocks": (1, 64),
    "Bn_compute_blocks": (0, 64),
    "residual_diff_threshold": (0.0, 1.0),
    "max_warmup_steps": (0, 200),
    "max_cached_steps": (-1, 200),
    "max_continuous_cached_steps": (-1, 200),
}


def _typed(key: str, value: object) -> int | float:
    """A JSON number of the key's type (an int may stand for a float; 5.0 for 5)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StepCacheError(
            f"{PARAM}.{key} must be a number", param=f"{PARAM}.{key}", code="invalid_type"
        )
    if key == "residual_diff_threshold":
        return float(value)
    if isinstance(value, float) and not value.is_integer():
        raise StepCacheError(
            f"{PARAM}.{key} must be an integer", param=f"{PARAM}.{key}", code="invalid_type"
        )
    return int(value)


def parse_step_cache_flag(text: str) -> StepCacheSettings | None:
    """`--step-cache`: off, on (the defaults) or a JSON object of DBCache keys."""
    word = text.strip().lower()
    if word in ("off", "false", "none"):
        return None
    if word in ("on", "true"):
        return StepCacheSettings()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise StepCacheError(f"expected off, on or a JSON object of {', '.join(FIELDS)}")
    return StepCacheSettings.from_json(data)


StepCacheChoice = bool | StepCacheSettings | None
"""What a client asks: None (the server's default), False (off), True (on: the server's
settings, else the defaults), or settings of its own."""


def step_cache_choice(value: object) -> StepCacheChoice:
    """A request's `step_cache` value: a bool, null, or an object of DBCache keys."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return StepCacheSettings.from_json(value)
    raise StepCacheError(
        f"{PARAM} must be true, false or an object of cache-dit DBCache keys ({', '.join(FIELDS)})",
        code="invalid_type",
    )
