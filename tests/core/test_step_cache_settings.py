"""Step cache settings: JSON spellings, the server's default, refusals, what was stored."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helios_serve.core.requests import RequestError, SamplingChoices, sampling_settings
from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import ModelInfo, settings_from_json, settings_to_json
from helios_serve.core.step_cache import (
    StepCacheError,
    StepCacheSettings,
    parse_step_cache_flag,
    step_cache_choice,
)
from helios_serve.core.types import Variant


def info(variant: Variant, **changes: object) -> ModelInfo:
    base = ModelInfo(
        name="m",
        variant=variant,
        is_tiny=False,
        device="cpu",
        default_width=640,
        default_height=384,
        default_max_sequence_length=512,
        pyramid_stages=1 if variant is Variant.BASE else 3,
        step_cache_available=variant is not Variant.DISTILLED,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_defaults_are_vllm_omnis_and_json_round_trips() -> None:
    defaults = StepCacheSettings()
    assert defaults.to_json() == {
        "Fn_compute_blocks": 1,
        "Bn_compute_blocks": 0,
        "residual_diff_threshold": 0.24,
        "max_warmup_steps": 4,
        "max_cached_steps": -1,
        "max_continuous_cached_steps": 3,
    }
    assert defaults.describe() == "F1B0_W4MC3_R0.24"
    custom = StepCacheSettings.from_json({"residual_diff_threshold": 0.1, "max_warmup_steps": 6})
    assert (custom.residual_diff_threshold, custom.max_warmup_steps) == (0.1, 6)
    assert StepCacheSettings.from_json(custom.to_json()) == custom


@pytest.mark.parametrize(
    ("data", "param", "code"),
    [
        ({"Fn": 1}, "step_cache.Fn", "unknown_parameter"),
        ({"Fn_compute_blocks": 0}, "step_cache.Fn_compute_blocks", "invalid_value"),
        ({"Fn_compute_blocks": 1.5}, "step_cache.Fn_compute_blocks", "invalid_type"),
        ({"max_warmup_steps": True}, "step_cache.max_warmup_steps", "invalid_type"),
        ({"residual_diff_threshold": "0.2"}, "step_cache.residual_diff_threshold", "invalid_type"),
        ({"residual_diff_threshold": 1.5}, "step_cache.residual_diff_threshold", "invalid_value"),
    ],
)
def test_bad_keys_and_values_name_themselves(
    data: dict[str, object], param: str, code: str
) -> None:
    with pytest.raises(StepCacheError) as refused:
        step_cache_choice(data)
    assert (refused.value.param, refused.value.code) == (param, code)


def test_choice_spellings_and_the_server_flag() -> None:
    assert step_cache_choice(None) is None
    assert step_cache_choice(True) is True
    assert step_cache_choice({}) == StepCacheSettings()
    with pytest.raises(StepCacheError, match="true, false or an object"):
        step_cache_choice("on")
    assert parse_step_cache_flag("off") is None
    assert parse_step_cache_flag("on") == StepCacheSettings()
    assert parse_step_cache_flag('{"max_cached_steps": 20}') == StepCacheSettings(
        max_cached_steps=20
    )
    with pytest.raises(StepCacheError):
        parse_step_cache_flag("[1]")


def test_server_default_applies_unless_the_request_chooses() -> None:
    server = StepCacheSettings(residual_diff_threshold=0.12)
    served = info(Variant.MID, step_cache_default=server)
    assert sampling_settings(served, SamplingChoices()).step_cache == server
    assert sampling_settings(served, SamplingChoices(step_cache=False)).step_cache is None
    assert sampling_settings(served, SamplingChoices(step_cache=True)).step_cache == server
    own = StepCacheSettings(max_warmup_steps=8)
    assert sampling_settings(served, SamplingChoices(step_cache=own)).step_cache == own
    plain = info(Variant.BASE)
    assert sampling_settings(plain, SamplingChoices()).step_cache is None
    assert sampling_settings(plain, SamplingChoices(step_cache=True)).step_cache == (
        StepCacheSettings()
    )


@pytest.mark.parametrize(
    ("served", "why"),
    [
        (info(Variant.DISTILLED), "no neighbouring step"),
        (info(Variant.BASE, step_cache_available=False), "helios-serve\\[cache\\]"),
    ],
)
def test_refused_where_it_cannot_run(served: ModelInfo, why: str) -> None:
    with pytest.raises(RequestError, match=why) as refused:
        sampling_settings(served, SamplingChoices(step_cache=True))
    assert (refused.value.param, refused.value.code) == ("step_cache", "unsupported_parameter")
    # a server default never reaches a model that cannot run it
    defaulted = replace(served, step_cache_default=StepCacheSettings())
    assert sampling_settings(defaulted, SamplingChoices()).step_cache is None


def test_settings_json_without_a_cache_is_what_it_was() -> None:
    """Jobs and stream states saved before step caching existed read back equal."""
    plain = settings_to_json(SamplingSettings())
    assert "step_cache" not in plain
    assert settings_from_json(plain) == SamplingSettings()
    cached = SamplingSettings(step_cache=StepCacheSettings(max_cached_steps=5))
    assert settings_from_json(settings_to_json(cached)) == cached


def test_model_info_read_back_from_json_rebuilds_the_default() -> None:
    """The cluster's worker registry stores `asdict(info)` as JSON and rebuilds it."""
    server = StepCacheSettings(residual_diff_threshold=0.3)
    data = {**info(Variant.BASE).__dict__, "step_cache_default": server.to_json()}
    assert ModelInfo(**data).step_cache_default == server
