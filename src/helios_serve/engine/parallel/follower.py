"""A rank other than 0: loads its one part of the model, joins the world, serves rank 0.

Transformer ranks load only the transformer (no text encoder, no VAE); the decode rank loads
only the VAE. Both hold no stream state: everything a checkpoint saves lives in rank 0, which is
why a saved stream resumes under any layout.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import torch

from helios_serve.engine.parallel.group import RankGroups, RankSpec, die_with_parent, join_world

logger = logging.getLogger(__name__)


def _dtype(name: str) -> torch.dtype:
    return torch.bfloat16 if name == "bfloat16" else torch.float32


def load_transformer(spec: RankSpec) -> Any:
    from diffusers import HeliosTransformer3DModel

    device = torch.device(spec.layout.device_of(spec.rank))
    transformer = HeliosTransformer3DModel.from_pretrained(
        str(spec.checkpoint), subfolder="transformer", dtype=_dtype(spec.options.transformer_dtype)
    )
    transformer.to(device).eval()
    transformer.set_attention_backend(spec.options.load.attention_backend)
    return transformer


def prepare_transformer(transformer: Any, groups: RankGroups, spec: RankSpec) -> None:
    """As rank 0 prepares its own: the sequence split, then the engine's forward, FP8 and
    compilation (`loader.prepare_transformer`)."""
    from helios_serve.engine.loader import prepare_transformer as prepare_engine_path
    from helios_serve.engine.parallel.context import enable_context_parallel

    if groups.layout.context_parallel > 1:
        enable_context_parallel(transformer, groups, spec.options.load.attention_backend)
    prepare_engine_path(transformer, spec.options.load)


def main(spec: RankSpec) -> None:
    """A rank's entry point (started with `spawn` by rank 0)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # rank 0 decides when the ranks stop
    logging.basicConfig(
        level=spec.options.log_level,
        format=f"%(asctime)s %(levelname)s rank{spec.rank}[%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from helios_serve.engine.loader import quiet_libraries

    quiet_libraries()
    if spec.rank == spec.layout.decode_rank:
        from helios_serve.engine.parallel.decode import load_decoder, serve_decodes

        decoder = load_decoder(spec)
        groups = join_world(spec.layout, spec.rank, spec.init_method)
        serve_decodes(decoder, groups)
        return
    transformer = load_transformer(spec)
    groups = join_world(spec.layout, spec.rank, spec.init_method)
    prepare_transformer(transformer, groups, spec)
    from helios_serve.engine.parallel.forward import serve_forwards

    logger.info("rank %d ready: %s", spec.rank, spec.layout.summary())
    serve_forwards(transformer, groups)
