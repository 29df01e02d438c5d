"""Real-time sessions get the server's step cache (--step-cache) like jobs do."""

from __future__ import annotations

from dataclasses import replace

from helios_serve.core.step_cache import StepCacheSettings
from helios_serve.core.types import Variant
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.slots import StreamHost

from .conftest import np_upscale


def _host(variant: Variant, available: bool) -> StreamHost:
    info = replace(
        FakeEngineConfig().info,
        variant=variant,
        step_cache_available=available,
        step_cache_default=StepCacheSettings(residual_diff_threshold=0.1),
    )
    return StreamHost.build(FakeEngine(FakeEngineConfig(info=info)), RealtimeConfig(), np_upscale)


def test_sessions_on_mid_use_the_servers_step_cache() -> None:
    settings = _host(Variant.MID, available=True).default_options().settings
    assert settings.step_cache == StepCacheSettings(residual_diff_threshold=0.1)


def test_sessions_where_caching_cannot_run_get_none() -> None:
    assert _host(Variant.DISTILLED, available=False).default_options().settings.step_cache is None
