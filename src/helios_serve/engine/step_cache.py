"""Step caching through cache-dit (DBCache) on this engine's chunk-by-chunk streamer.

cache-dit wraps a diffusers pipeline's `__call__` and resets its state per call; this engine
never calls the pipeline: it calls the transformer step by step, chunk after chunk, and several
streams (jobs, sessions) take turns on one transformer. So cache-dit is used in its
transformer-only mode (`enable_cache(transformer)`, a persistent context; its own Helios block
adapter, Pattern_2), scoped to one chunk:

- `chunk()` enables the hooks when the chunk starts and removes them when it ends (even on an
  error or a cancel), so other streams, uncached ones included, meet the plain transformer;
- `begin_stage()` gives every sampling stage a fresh context (`refresh_context`): a pyramid
  stage runs at a new resolution, so nothing carries over; the warm-up counts per stage.

No cache state survives a chunk: a stream resumed from a saved state (between chunks) makes the
same frames as one that never stopped, and the state format is unchanged.

With sequential guidance cache-dit keeps the conditional and unconditional passes apart
(`enable_separate_cfg`: its calls alternate cond, uncond); with batched guidance one call is
one step and both halves share the decision.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from helios_serve.core.settings import SamplingSettings
from helios_serve.core.step_cache import StepCacheSettings
from helios_serve.core.types import Variant
from helios_serve.engine.guidance import GuidancePasses
from helios_serve.errors import InvalidInputError

logger = logging.getLogger(__name__)


def step_cache_available() -> bool:
    """cache-dit is installed (the `cache` extra); checked without importing it (~10 s)."""
    return importlib.util.find_spec("cache_dit") is not None


def preload() -> None:
    """Import cache-dit now (~10 s) rather than in the first cached chunk."""
    _cache_dit()


def _cache_dit() -> Any:
    # cache-dit logs every hook it adds and removes at INFO/WARNING, per chunk here
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")
    try:
        import cache_dit
    except ImportError:
        raise InvalidInputError(
            "step_cache needs cache-dit: install helios-serve[cache]", param="step_cache"
        ) from None
    return cache_dit


@dataclass
class StepCacheStats:
    """What caching did in one chunk, counted in transformer calls (two per step with
    sequential guidance)."""

    calls: int = 0
    cached_calls: int = 0
    """Calls that ran only the first Fn (and last Bn) blocks, reusing the middle ones."""
    skipped_blocks: int = 0

    def as_extras(self) -> dict[str, float]:
        return {
            "step_cache_calls": float(self.calls),
            "step_cache_cached_calls": float(self.cached_calls),
            "step_cache_skipped_blocks": float(self.skipped_blocks),
        }


class ChunkStepCache:
    """cache-dit on one stream's transformer, one chunk at a time."""

    def __init__(self, transformer: Any, settings: StepCacheSettings, *, separate_cfg: bool):
        blocks = len(transformer.blocks)
        if settings.Fn_compute_blocks + settings.Bn_compute_blocks > blocks:
            raise InvalidInputError(
                f"step_cache computes Fn_compute_blocks + Bn_compute_blocks = "
                f"{settings.Fn_compute_blocks + settings.Bn_compute_blocks} blocks always; "
                f"this transformer has {blocks}",
                param="step_cache",
            )
        self._cache_dit = _cache_dit()
        self._transformer = transformer
        self.settings = settings
        self._separate_cfg = separate_cfg
        self._middle_blocks = blocks - settings.Fn_compute_blocks - settings.Bn_compute_blocks
        self._stats: StepCacheStats | None = None
        self._stage_open = False
        self.last = StepCacheStats()
        """The stats of the last chunk."""

    def _config(self, steps: int | None) -> Any:
        s = self.settings
        return self._cache_dit.DBCacheConfig(
            Fn_compute_blocks=s.Fn_compute_blocks,
            Bn_compute_blocks=s.Bn_compute_blocks,
            residual_diff_threshold=s.residual_diff_threshold,
            max_warmup_steps=s.max_warmup_steps,
            max_cached_steps=s.max_cached_steps,
            max_continuous_cached_steps=s.max_continuous_cached_steps,
            enable_separate_cfg=self._separate_cfg,
            num_inference_steps=steps,
        )

    @contextmanager
    def chunk(self) -> Iterator[StepCacheStats]:
        """Hooks on for one chunk; the stats it yields are complete once the block ends."""
        if getattr(self._transformer, "_is_cached", False):
            raise RuntimeError("the transformer already carries cache-dit hooks")
        self._stats = StepCacheStats()
        self._stage_open = False
        self._cache_dit.enable_cache(self._transformer, cache_config=self._config(None))
        try:
            yield self._stats
            self._count_stage()
        finally:
            self._cache_dit.disable_cache(self._transformer)
            self.last, self._stats = self._stats, None

    def begin_stage(self, stage: int, steps: int) -> None:
        """A fresh context for the stage that starts (after counting the one that ended)."""
        if self._stats is None:
            raise RuntimeError(f"stage {stage} began outside chunk()")
        self._count_stage()
        self._cache_dit.refresh_context(self._transformer, cache_config=self._config(steps))
        self._stage_open = True

    def _count_stage(self) -> None:
        if not self._stage_open or self._stats is None:
            return
        context = self._context()
        cached = len(context.get_cached_steps()) + len(context.get_cfg_cached_steps())
        self._stats.calls += int(context.transformer_executed_steps)
        self._stats.cached_calls += cached
        self._stats.skipped_blocks += cached * self._middle_blocks
        self._stage_open = False

    def _context(self) -> Any:
        """cache-dit's context of the (single) block list: its counters are the stats."""
        manager = self._transformer._context_manager
        (name,) = self._transformer._context_names
        return manager.get_context(name)


def stream_step_cache(
    transformer: Any, settings: SamplingSettings, variant: Variant, guidance: GuidancePasses
) -> ChunkStepCache | None:
    """The step cache of a stream with `settings`, or None when it has none."""
    if settings.step_cache is None:
        return None
    if variant is Variant.DISTILLED:
        raise InvalidInputError(
            "step_cache is for Helios-Base and Helios-Mid: Distilled's 1-2 steps per stage "
            "leave no neighbouring step to reuse",
            param="step_cache",
        )
    separate = settings.uses_cfg and guidance.separate_calls
    return ChunkStepCache(transformer, settings.step_cache, separate_cfg=separate)


def chunk_scope(cache: ChunkStepCache | None) -> AbstractContextManager[StepCacheStats | None]:
    """`cache.chunk()`, or nothing for a stream without a step cache."""
    return nullcontext() if cache is None else cache.chunk()
