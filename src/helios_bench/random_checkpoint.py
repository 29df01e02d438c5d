"""A diffusers-format Helios-Distilled checkpoint of the real 14B architecture, random weights.

``python -m helios_bench.random_checkpoint --out DIR [--arch 14b|toy] [--device cuda]``

So that `helios serve --model DIR` (the real loader, the real engine process) can run a live
session at the 14B model's speed where no real weights can be had: the transformer (40 layers,
d = 5120, bf16) and the Wan2.1 VAE (fp32) get random weights made on `--device`; the text encoder
is a one-layer random UMT5 with the real output width (4096) and the tiny checkpoint's tokenizer,
so prompts still change the embeddings (the speed of UMT5-XXL itself is not what is measured).
About 29 GB on disk for 14b. Its output is noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from helios_serve.core.types import Variant
from helios_serve.engine.tiny import _build_tokenizer

from .arch import (
    HELIOS_14B_TRANSFORMER,
    WAN21_VAE,
    RandomModelSpec,
    build_random_components,
    build_scheduler,
)

TOY_TRANSFORMER: dict[str, Any] = {
    **HELIOS_14B_TRANSFORMER,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "ffn_dim": 64,
    "num_layers": 2,
    "text_dim": 64,
    "freq_dim": 16,
    "rope_dim": (4, 6, 6),
}
TOY_VAE: dict[str, Any] = {
    **WAN21_VAE,
    "base_dim": 4,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
}


def _text_encoder(width: int, vocab: int) -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=vocab,
        d_model=width,
        d_kv=64,
        d_ff=256,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config).eval()


def write_random_checkpoint(out: Path, arch: str, device: torch.device, seed: int = 0) -> Path:
    """Write the checkpoint to `out` (created) and return it."""
    from diffusers import HeliosPyramidPipeline

    toy = arch == "toy"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    spec = RandomModelSpec(
        TOY_TRANSFORMER if toy else HELIOS_14B_TRANSFORMER,
        TOY_VAE if toy else WAN21_VAE,
        device,
        dtype=dtype,
    )
    torch.manual_seed(seed)
    transformer, vae = build_random_components(spec)
    tokenizer = _build_tokenizer()
    encoder = _text_encoder(int(spec.transformer["text_dim"]), len(tokenizer)).to(device, dtype)
    pipe = HeliosPyramidPipeline(
        tokenizer=tokenizer,
        text_encoder=encoder,
        transformer=transformer,
        vae=vae,
        scheduler=build_scheduler(Variant.DISTILLED),
        is_cfg_zero_star=False,
        is_distilled=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(out), safe_serialization=True, max_shard_size="10GB")
    note = {"arch": arch, "seed": seed, "note": "random weights of the real architecture: noise"}
    (out / "helios_random.json").write_text(json.dumps(note, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m helios_bench.random_checkpoint")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arch", choices=("14b", "toy"), default="14b")
    p.add_argument("--device", default=None, help="where weights are made (default: cuda if any)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    write_random_checkpoint(args.out, args.arch, device, args.seed)
    took = time.perf_counter() - start
    print(f"wrote {args.arch} random checkpoint to {args.out} in {took:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
