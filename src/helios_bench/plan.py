"""Turn `helios bench` flags into configurations: which model, settings, size and device."""

from __future__ import annotations

import argparse
import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from helios_serve.config import default_data_dir
from helios_serve.core.settings import PRESETS, SamplingSettings
from helios_serve.core.types import Variant
from helios_serve.engine.loader import LoadedModel, LoadOptions, load_model
from helios_serve.engine.tiny import TINY_MODEL_NAMES

from .arch import (
    HELIOS_14B_TRANSFORMER,
    WAN21_VAE,
    RandomModelSpec,
    RandomPromptEncoder,
    build_random_components,
    random_model,
)
from .runner import BenchConfig

DEFAULT_SIZE = {"tiny": (128, 128), "14b": (640, 384)}
"""(width, height) when --width/--height are not given."""


class BenchError(Exception):
    """A flag combination that cannot run; the message is one line for the terminal."""


def parse_int_list(text: str) -> tuple[int, ...]:
    """ "2,8,32" -> (2, 8, 32); every entry a positive integer."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_presets(text: str) -> tuple[Variant, ...]:
    try:
        return tuple(Variant(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        names = ", ".join(v.value for v in Variant)
        raise argparse.ArgumentTypeError(f"presets are {names}; got {text!r}") from None


def parse_device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {requested}: no CUDA device is available here")
    return torch.device(requested)


@dataclass(frozen=True)
class Plan:
    """Everything fixed by the flags; `configs()` loads one model at a time."""

    args: argparse.Namespace
    device: torch.device
    width: int
    height: int
    presets: tuple[Variant | None, ...]
    """None: the checkpoint's own variant."""

    def configs(self) -> Iterator[BenchConfig]:
        if self.args.arch == "14b":
            yield from self._random_14b()
        else:
            yield from self._checkpoints()

    def _checkpoints(self) -> Iterator[BenchConfig]:
        a = self.args
        options = LoadOptions(
            device=str(self.device),
            attention_backend=a.attention_backend,
            compile=a.compile,
            vae_dtype=_vae_dtype(a.vae_dtype),
        )
        for preset in self.presets:
            name = a.model
            if preset is not None and a.model in TINY_MODEL_NAMES:
                name = f"tiny-{preset.value}"
            model = load_model(name, a.data_dir or default_data_dir(), options)
            yield self._config(model, preset or model.variant, None)
            del model
            gc.collect()

    def _random_14b(self) -> Iterator[BenchConfig]:
        a = self.args
        spec = RandomModelSpec(
            HELIOS_14B_TRANSFORMER, WAN21_VAE, self.device, vae_dtype=_vae_dtype(a.vae_dtype)
        )
        components = build_random_components(spec)
        if a.compile:
            components[0].compile_repeated_blocks(fullgraph=True)
        encoder = RandomPromptEncoder(
            int(HELIOS_14B_TRANSFORMER["text_dim"]), self.device, spec.dtype
        )
        for preset in self.presets:
            variant = preset or Variant.DISTILLED
            model = random_model(spec, variant, components, a.attention_backend)
            yield self._config(model, variant, encoder)

    def _config(
        self, model: LoadedModel, preset: Variant, encoder: RandomPromptEncoder | None
    ) -> BenchConfig:
        settings = settings_for(preset, model, self.args)
        check_size(model, settings, self.width, self.height)
        return BenchConfig(
            name=config_name(model, preset, settings, self.width, self.height),
            model=model,
            settings=settings,
            height=self.height,
            width=self.width,
            seed=self.args.seed,
            chunk_counts=tuple(sorted(set(self.args.chunks))),
            warmup=self.args.warmup,
            skip_diffusers=self.args.skip_diffusers,
            prompt_encoder=encoder,
            prefetch=self.args.overlap_decode,
        )


def _vae_dtype(name: str) -> torch.dtype:
    return torch.bfloat16 if name == "bfloat16" else torch.float32


def make_plan(args: argparse.Namespace) -> Plan:
    """Validate the flags that can be checked before anything is loaded."""
    device = resolve_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.arch == "14b" and device.type != "cuda":
        raise BenchError(
            "--arch 14b needs a CUDA GPU with ~45 GB free, and none is available "
            "here (use --arch tiny on CPU)"
        )
    default_w, default_h = DEFAULT_SIZE[args.arch]
    width, height = args.width or default_w, args.height or default_h
    if width % 16 or height % 16:
        raise BenchError(f"--width/--height must be multiples of 16, got {width}x{height}")
    presets: tuple[Variant | None, ...] = args.preset or (None,)
    variants = {p for p in presets if p is not None} or None
    if args.steps and variants is not None and Variant.BASE not in variants:
        raise BenchError(
            "--steps sets the single-stage Base sampler; use --pyramid-steps for distilled and mid"
        )
    if args.pyramid_steps and variants == {Variant.BASE}:
        raise BenchError("--pyramid-steps applies to distilled and mid; use --steps for base")
    return Plan(args, device, width, height, presets)


def settings_for(preset: Variant, model: LoadedModel, args: argparse.Namespace) -> SamplingSettings:
    """The preset's settings adjusted to the checkpoint and the flags, the same for both sides."""
    settings = PRESETS[preset].with_overrides(
        max_sequence_length=model.default_max_sequence_length,
        # CFG-Zero* is a pipeline config flag in diffusers: follow the checkpoint
        use_cfg_zero_star=bool(model.pipe.config.get("is_cfg_zero_star", False)),
    )
    if args.pyramid_steps:
        settings = settings.with_overrides(pyramid_steps=tuple(args.pyramid_steps))
    if args.steps:
        settings = settings.with_overrides(num_inference_steps=args.steps)
    if args.no_amplify:
        settings = settings.with_overrides(amplify_first_chunk=False)
    return settings


def check_size(model: LoadedModel, settings: SamplingSettings, width: int, height: int) -> None:
    """Refuse sizes diffusers' baseline would crash on (spec pitfall 2)."""
    pyramid = model.variant is not Variant.BASE
    if pyramid and settings.uses_cfg and settings.use_cfg_zero_star and min(width, height) < 128:
        raise BenchError(
            f"{model.variant.value} with CFG-Zero* needs at least 128x128 "
            f"(diffusers crashes on a 1x1 stage-0 grid), got {width}x{height}"
        )


def config_name(
    model: LoadedModel, preset: Variant, settings: SamplingSettings, width: int, height: int
) -> str:
    if model.variant is Variant.BASE:
        steps = f"{settings.num_inference_steps} steps"
    else:
        steps = "[" + ",".join(map(str, settings.pyramid_steps)) + "]"
        if settings.amplify_first_chunk and model.variant is Variant.DISTILLED:
            steps += "+amplify"
    guidance = f" cfg {settings.guidance_scale:g}" if settings.uses_cfg else ""
    checkpoint = "" if preset is model.variant else f" on {model.variant.value} weights"
    return f"{model.name} {preset.value}{checkpoint} {steps}{guidance} {width}x{height}"
