"""A tiny random Helios checkpoint in the exact diffusers layout, built fully offline.

It is the embedded default for demos and tests: it goes through the same loader as the real
weights, and its output is noise. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from helios_serve.core.types import Variant

logger = logging.getLogger(__name__)

TINY_MODEL_NAMES: dict[str, Variant] = {
    "tiny": Variant.DISTILLED,
    "tiny-distilled": Variant.DISTILLED,
    "tiny-mid": Variant.MID,
    "tiny-base": Variant.BASE,
}
"""Names accepted by `--model` that mean "build (once) and load a tiny checkpoint"."""

TINY_MAX_SEQUENCE_LENGTH = 16
"""The tiny text encoder's context: real checkpoints use diffusers' default of 512."""

_GAMMA = 0.33333  # exactly 1/3 makes diffusers' float32 Cholesky fail on CPU (spec pitfall 1)
_CORPUS = [
    "a cat and a dog baking a cake together in a kitchen",
    "a red fox runs through fresh snow under a pale winter sky",
    "waves crash on a rocky shore at sunset, slow motion",
    "a city street at night with neon signs and light rain",
    "an astronaut floats above the earth, the camera slowly orbits",
    "bright tones, overexposed, static, blurred details, low quality",
]


def _tiny_vocab(size: int = 64) -> list[tuple[str, float]]:
    """A fixed Unigram vocabulary: specials, the corpus' letters, then its commonest words.

    Built by counting rather than by `UnigramTrainer`, whose scores vary run to run: the
    checkpoint must be byte-identical for a given seed.
    """
    words = Counter(w for line in _CORPUS for w in line.replace(",", " ").split())
    letters = sorted({c for line in _CORPUS for c in line if c.isalpha()})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0 - i / 100) for i, c in enumerate(letters)]
    ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab += [("\u2581" + w, -1.0 - i / 100) for i, (w, _) in enumerate(ranked)]
    return vocab[:size]


def _build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram(_tiny_vocab(), unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="right",
        model_max_length=TINY_MAX_SEQUENCE_LENGTH,
    )


def _build_text_encoder(vocab_size: int) -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config).eval()


@dataclass(frozen=True)
class TinyLayout:
    """The tiny checkpoint's shape knobs that set its cost per video pixel."""

    patch: tuple[int, int, int] = (1, 2, 2)
    """The real checkpoints' patch."""
    vae_res_blocks: int = 1


REAL_LAYOUT = TinyLayout()
COARSE_LAYOUT = TinyLayout(patch=(1, 4, 4), vae_res_blocks=0)
"""For tests whose clients ask for big videos and check the API, not the frames: a quarter of
the tokens (a sixteenth of the attention) and half the VAE decoder's full-size convolutions."""


def _build_transformer(patch: tuple[int, int, int] = REAL_LAYOUT.patch) -> Any:
    from diffusers import HeliosTransformer3DModel

    return HeliosTransformer3DModel(
        patch_size=patch,
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_dim=(4, 4, 4),
        has_multi_term_memory_patch=True,
        guidance_cross_attn=True,
        zero_history_timestep=True,
    ).eval()


def _build_vae(res_blocks: int = REAL_LAYOUT.vae_res_blocks) -> Any:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=res_blocks,
        temperal_downsample=[False, True, True],
    ).eval()


def _pyramid_gamma(patch: tuple[int, int, int]) -> float:
    """The block-noise correlation: the real 1/3 (almost) unless the patch is coarser, whose
    covariance (1 + g) I - g J over ph*pw pixels is positive definite only for g < 1/(ph*pw - 1)."""
    block = patch[1] * patch[2]
    return _GAMMA if block <= 4 else 0.9 / (block - 1)


def _build_scheduler(variant: Variant, gamma: float = _GAMMA) -> Any:
    from diffusers import HeliosDMDScheduler, HeliosScheduler

    if variant is Variant.BASE:
        return HeliosScheduler(stages=1, stage_range=[0, 1], use_dynamic_shifting=True)
    if variant is Variant.MID:
        return HeliosScheduler(
            stages=3, stage_range=[0, 1 / 3, 2 / 3, 1], gamma=gamma, use_dynamic_shifting=True
        )
    return HeliosDMDScheduler(
        stages=3, gamma=gamma, use_dynamic_shifting=True, time_shift_type="linear"
    )


def build_tiny_pipeline(variant: Variant, seed: int = 0, layout: TinyLayout = REAL_LAYOUT) -> Any:
    """Build the tiny pipeline in memory (random weights from `seed`)."""
    from diffusers import HeliosPipeline, HeliosPyramidPipeline

    torch.manual_seed(seed)
    tokenizer = _build_tokenizer()
    components = {
        "tokenizer": tokenizer,
        "text_encoder": _build_text_encoder(len(tokenizer)),
        "transformer": _build_transformer(layout.patch),
        "vae": _build_vae(layout.vae_res_blocks),
        "scheduler": _build_scheduler(variant, _pyramid_gamma(layout.patch)),
    }
    if variant is Variant.BASE:
        return HeliosPipeline(**components)
    return HeliosPyramidPipeline(
        **components,
        is_cfg_zero_star=variant is Variant.MID,
        is_distilled=variant is Variant.DISTILLED,
    )


def write_tiny_checkpoint(
    directory: Path, variant: Variant, seed: int = 0, layout: TinyLayout = REAL_LAYOUT
) -> Path:
    """Write a tiny checkpoint to `directory` (created) in the real repos' layout."""
    directory.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(variant, seed, layout)
    pipe.save_pretrained(str(directory), safe_serialization=True)
    marker = {"variant": variant.value, "seed": seed, "note": "random weights: output is noise"}
    (directory / "helios_tiny.json").write_text(json.dumps(marker, indent=2) + "\n")
    return directory


def ensure_tiny_checkpoint(data_dir: Path, name: str) -> Path:
    """Return the directory of the tiny checkpoint `name`, building it on first use."""
    variant = TINY_MODEL_NAMES[name]
    directory = data_dir / "models" / f"tiny-{variant.value}"
    if not (directory / "model_index.json").is_file():
        logger.info("building the tiny %s checkpoint in %s", variant.value, directory)
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_tiny_checkpoint(tmp, variant)
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    return directory
