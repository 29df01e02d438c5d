"""The engine a process runs, built from its options: the only place (with `generate`) that
sees the concrete engines (a supervised child process, the model in this process, the paced
test engine) and the session upscalers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from helios_serve.core.protocols import Engine, Upscaler
from helios_serve.core.settings import GuidanceMode
from helios_serve.core.step_cache import StepCacheSettings
from helios_serve.errors import InvalidInputError

if TYPE_CHECKING:
    from helios_serve.engine.child import ChildSpec, StepHook
    from helios_serve.engine.loader import LoadedModel
    from helios_serve.engine.parallel.layout import ParallelLayout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """What `--model`, `--device`, `--engine-isolation` and their friends ask for."""

    data_dir: Path
    model: str = "tiny"
    served_name: str | None = None
    device: str | None = None
    vae_dtype: Literal["float32", "bfloat16"] = "float32"
    attention_backend: str = "native"
    compile: bool = False
    guidance: GuidanceMode = "sequential"
    step_cache: StepCacheSettings | None = None
    precision: Literal["exact", "fast"] = "exact"
    compile_vae: bool = False
    layout: ParallelLayout | None = None
    """Several devices for one engine (`--gpus/--parallel/--decode-device`)."""
    isolation: Literal["process", "thread"] = "process"
    stall_timeout_s: float = 300.0
    test_engine: str | None = None
    """`paced:SECONDS`: the paced TEST engine instead of a model (`engine/paced.py`)."""
    log_level: int = logging.INFO
    step_hook: StepHook | None = None
    """The engine process's fault-injection seam: None in production, a test's hook otherwise."""


def load(options: EngineOptions) -> LoadedModel:
    """The model in this process (`helios generate`, `--engine-isolation thread`): what the
    engine process would load for the same flags."""
    from helios_serve.engine.child import load_model_of

    return load_model_of(child_spec(options))  # type: ignore[no-any-return]


def child_spec(options: EngineOptions) -> ChildSpec:
    """What the engine (in its process or this one) loads: the model flags, once."""
    from helios_serve.engine.child import ChildSpec

    return ChildSpec(
        model=options.model,
        data_dir=options.data_dir,
        served_name=options.served_name or options.model,
        device=options.device,
        vae_dtype=options.vae_dtype,
        attention_backend=options.attention_backend,
        compile=options.compile,
        guidance=options.guidance,
        step_cache=options.step_cache,
        precision=options.precision,
        compile_vae=options.compile_vae,
        layout=options.layout,
        log_level=options.log_level,
        step_hook=options.step_hook,
    )


def build_engine(options: EngineOptions) -> Engine:
    """A supervised engine process (launched: it loads while the caller goes on), the model in
    this process, or the paced test engine."""
    from helios_serve.engine.process import ProcessEngine
    from helios_serve.engine.service import LocalEngine, describe

    if options.test_engine is not None:
        from helios_serve.engine.paced import PacedEngine, paced_info, parse_engine_spec

        timing = parse_engine_spec(options.test_engine)
        logger.warning("serving the paced TEST engine (%.3g s per chunk): no model", timing.chunk_s)
        return PacedEngine(timing, paced_info(options.served_name or "paced"))
    served = options.served_name or options.model
    if options.isolation == "thread":
        if options.layout is not None:
            raise InvalidInputError(
                "--gpus/--parallel/--decode-device need --engine-isolation process: the "
                "engine process supervises its ranks",
                param="parallel",
            )
        loaded = load(options)
        aliases = tuple(a for a in {loaded.name} if a != served)
        return LocalEngine(loaded, describe(loaded, served, aliases))
    if options.stall_timeout_s <= 0:
        raise InvalidInputError("--engine-stall-timeout must be positive", param="serve")
    spec = child_spec(options)
    engine = ProcessEngine(spec, stall_timeout_s=options.stall_timeout_s)
    engine.launch()
    return engine


def abort_engine(engine: Engine) -> None:
    """Stop an engine whose server never started (its child would keep this process alive)."""
    from helios_serve.engine.process import ProcessEngine

    if isinstance(engine, ProcessEngine):
        engine.abort()


def build_upscaler(device: str, sr_weights: Path | None) -> Upscaler:
    """Session super-resolution on the model's device: a real network when given, else bicubic."""
    import torch

    from helios_serve.engine.sr import SpandrelUpscaler, TorchResampler

    if sr_weights is not None:
        return SpandrelUpscaler(sr_weights, torch.device(device))
    return TorchResampler(torch.device(device))
