"""Load a diffusers-format Helios checkpoint (directory, hub id or a tiny name) for streaming."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from helios_serve.core.types import Variant
from helios_serve.engine import compact_dit
from helios_serve.engine.precision import Precision, check_fast_supported, probe_fp8, quantize_fp8
from helios_serve.engine.tiny import (
    TINY_MAX_SEQUENCE_LENGTH,
    TINY_MODEL_NAMES,
    ensure_tiny_checkpoint,
)
from helios_serve.engine.vae_decode import DecodeOptions, VaeDecoder, raise_recompile_limit
from helios_serve.engine.variant import detect_variant
from helios_serve.errors import CheckpointError

logger = logging.getLogger(__name__)

COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
_CONFIG_FILES = {
    "transformer": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "scheduler": "scheduler_config.json",
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
AttentionBackend = Literal["native", "flash", "_native_flash", "_native_cudnn", "_native_efficient"]


@dataclass(frozen=True)
class LoadOptions:
    """Device and precision policy; `None` means "the right default for the device"."""

    device: str | None = None
    transformer_dtype: torch.dtype | None = None
    vae_dtype: torch.dtype | None = None
    attention_backend: str = "native"
    compile: bool = False
    """torch.compile the transformer blocks (regional compilation)."""
    precision: Precision = Precision.EXACT
    """`fast`: FP8 linear layers in the transformer blocks (engine/precision.py)."""
    fp8_edge_blocks: int = 0
    """Fast mode: the first and last this many blocks stay bf16."""
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    """How the VAE decodes (engine/vae_decode.py); `decode.compile` compiles the decoder."""


@dataclass(frozen=True)
class LoadedModel:
    """A loaded pipeline plus what the rest of the engine needs to know about it."""

    pipe: Any
    name: str
    path: Path
    variant: Variant
    device: torch.device
    is_tiny: bool
    vae_decoder: VaeDecoder | None = None
    """The decoder streams share (its layout and compiled code); None: a default one each."""
    precision: Precision = Precision.EXACT

    @property
    def default_max_sequence_length(self) -> int:
        return TINY_MAX_SEQUENCE_LENGTH if self.is_tiny else 512

    @property
    def default_size(self) -> tuple[int, int]:
        """(width, height): the trained 640x384, or a small size that keeps the tiny one quick."""
        return (192, 128) if self.is_tiny else (640, 384)


def quiet_libraries() -> None:
    """diffusers' and transformers' progress bars and warnings off: our own logs say enough."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def resolve_checkpoint(model: str, data_dir: Path) -> tuple[Path, bool]:
    """Turn `--model` into a local directory: a tiny name, a directory, or a hub id."""
    if model in TINY_MODEL_NAMES:
        return ensure_tiny_checkpoint(data_dir, model), True
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")):
        if not path.is_dir():
            raise CheckpointError(
                f"{model}: not a directory (give a checkpoint directory or hub id)"
            )
        return path, (path / "helios_tiny.json").is_file()
    return _download(model), False


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as exc:
        raise CheckpointError(
            f"{repo_id}: not a local directory, and downloading it from the hub failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}). "
            "Pass a local checkpoint directory, or 'tiny' for the embedded test model."
        ) from None


def read_json(path: Path) -> dict[str, Any]:
    """Parse a config file, naming the file in any error."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (is this a diffusers-format Helios checkpoint?)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def validate_checkpoint(path: Path) -> Variant:
    """Check the layout (which file, what is wrong) and return the detected variant."""
    model_index = read_json(path / "model_index.json")
    for component in COMPONENTS:
        folder = path / component
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: missing component folder '{component}/'")
        if component in _CONFIG_FILES:
            read_json(folder / _CONFIG_FILES[component])
        if component in ("transformer", "vae", "text_encoder") and not any(
            f.name.endswith(_WEIGHT_SUFFIXES) for f in folder.iterdir()
        ):
            raise CheckpointError(f"{folder}: no weights (*.safetensors or *.bin) found")
    return detect_variant(model_index, read_json(path / "scheduler" / "scheduler_config.json"))


def _pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(model: str, data_dir: Path, options: LoadOptions | None = None) -> LoadedModel:
    """Load `model` with the device/dtype policy of `options` (bf16 on GPU, fp32 on CPU)."""
    options = options or LoadOptions()
    path, is_tiny = resolve_checkpoint(model, data_dir)
    variant = validate_checkpoint(path)
    device = _pick_device(options.device)
    if options.precision is Precision.FAST:
        check_fast_supported(device)  # before gigabytes of weights load
    on_gpu = device.type == "cuda"
    model_dtype = options.transformer_dtype or (torch.bfloat16 if on_gpu else torch.float32)
    vae_dtype = options.vae_dtype or torch.float32
    pipe = _from_pretrained(path, variant, model_dtype, vae_dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    _apply_attention_backend(pipe.transformer, options.attention_backend)
    prepare_transformer(pipe.transformer, options)
    if is_tiny:
        logger.warning("serving the tiny random checkpoint %s: its output is noise", path)
    logger.info(
        "loaded %s (%s) on %s, transformer %s, VAE %s",
        model,
        variant,
        device,
        model_dtype,
        vae_dtype,
    )
    return LoadedModel(
        pipe=pipe,
        name=model,
        path=path,
        variant=variant,
        device=device,
        is_tiny=is_tiny,
        vae_decoder=VaeDecoder(pipe.vae, options.decode),
        precision=options.precision,
    )


def prepare_transformer(transformer: Any, options: LoadOptions) -> None:
    """The engine's forward (compact modulation, text K/V per prompt), then FP8 in fast mode,
    then regional compilation, in that order (compile last sees the final modules)."""
    compact_dit.install(transformer)
    if options.precision is Precision.FAST:
        device = next(transformer.parameters()).device
        probe_fp8(device)
        layers = quantize_fp8(transformer, options.fp8_edge_blocks)
        logger.info("fast mode: %d linear layers in FP8 (e4m3, row-wise)", len(layers))
    if options.compile:
        raise_recompile_limit()  # one graph per pyramid stage shape and per path
        transformer.compile_repeated_blocks(fullgraph=True, dynamic=False)


def _from_pretrained(
    path: Path, variant: Variant, dtype: torch.dtype, vae_dtype: torch.dtype
) -> Any:
    from diffusers import AutoencoderKLWan, HeliosPipeline, HeliosPyramidPipeline

    cls = HeliosPipeline if variant is Variant.BASE else HeliosPyramidPipeline
    try:
        vae = AutoencoderKLWan.from_pretrained(str(path), subfolder="vae", dtype=vae_dtype)
        return cls.from_pretrained(str(path), vae=vae, dtype=dtype)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: loading failed: {type(exc).__name__}: {exc}") from None


def _apply_attention_backend(transformer: Any, backend: str) -> None:
    try:
        transformer.set_attention_backend(backend)
    except Exception as exc:
        raise CheckpointError(f"attention backend {backend!r} unavailable here: {exc}") from None
