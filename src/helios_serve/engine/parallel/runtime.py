"""Rank 0's side of a parallel layout: start the other ranks, wire the model to them, stop them.

`start_parallel` runs once, from `load_model`, after rank 0's pipeline is on its device. What
it changes is all rank 0 needs: the transformer's forward runs on the group (`GroupForward`),
CFG runs its two passes on two branches (`guidance`), and chunks decode on the decode rank
(`decoder`). Streams, their RNGs and their saved state stay exactly as with one device.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from helios_serve.core.spec import StreamRequest
from helios_serve.engine.loader import LoadOptions
from helios_serve.engine.parallel.context import check_lengths, stream_lengths
from helios_serve.engine.parallel.forward import GroupForward, ParallelPasses, Shutdown, announce
from helios_serve.engine.parallel.group import RankGroups, RankProcesses, RankSpec, start_ranks
from helios_serve.engine.parallel.layout import ParallelLayout
from helios_serve.errors import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankOptions:
    """How every rank loads its part: rank 0's load options and resolved dtypes."""

    transformer_dtype: str
    vae_dtype: str
    load: LoadOptions
    log_level: int = logging.INFO


@dataclass
class ParallelRuntime:
    layout: ParallelLayout
    groups: RankGroups
    processes: RankProcesses
    forward: GroupForward | None
    decoder: Any = None
    """`RemoteDecoder` with a decode rank, else None."""

    @property
    def guidance(self) -> ParallelPasses | None:
        """The CFG passes to use, with cfg=2 (None: rank 0 runs both passes)."""
        if self.layout.cfg < 2 or self.forward is None:
            return None
        return ParallelPasses(self.forward)

    @property
    def pids(self) -> list[int]:
        return self.processes.pids

    def check_stream(self, request: StreamRequest, stages: int) -> None:
        """Refuse, when it opens, a stream this layout cannot run (not mid-chunk)."""
        for lengths in stream_lengths(request.height, request.width, stages):
            check_lengths(lengths, self.layout)
        # step caching (issue 26) skips blocks on rank 0 only: the other ranks would wait in
        # collectives rank 0 never joins
        if getattr(request.settings, "step_cache", None) is not None:
            raise InvalidInputError(
                "step caching does not run on a parallel layout yet", param="step_cache"
            )

    def attach(self, transformer: Any) -> None:
        """Run rank 0's transformer calls on the group (after its forward is final)."""
        if self.layout.transformer_ranks > 1:
            self.forward = GroupForward(transformer, self.groups)

    def close(self) -> None:
        """Stop the other ranks and leave the world (rank 0 stopping normally)."""
        with contextlib.suppress(Exception):
            if self.layout.transformer_ranks > 1:
                announce(self.groups, Shutdown())
            if self.decoder is not None:
                self.decoder.close()
        self.processes.kill()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def dtype_name(dtype: torch.dtype) -> str:
    return "bfloat16" if dtype == torch.bfloat16 else "float32"


def start_parallel(
    pipe: Any, checkpoint: Path, layout: ParallelLayout, options: RankOptions
) -> ParallelRuntime:
    """Start ranks 1..N-1, join them as rank 0 (blocking until every rank has loaded) and
    split rank 0's transformer like theirs; `attach` it once its forward is final."""
    from helios_serve.engine.parallel.context import enable_context_parallel

    def spec(rank: int, init_method: str) -> RankSpec:
        return RankSpec(rank, layout, checkpoint, init_method, options)

    logger.info("starting %d more engine rank(s): %s", layout.world_size - 1, layout.summary())
    processes, groups = start_ranks(layout, spec)
    if layout.context_parallel > 1:
        enable_context_parallel(pipe.transformer, groups, options.load.attention_backend)
    decoder = None
    if layout.decode_rank is not None:
        from helios_serve.engine.parallel.decode import RemoteDecoder

        decoder = RemoteDecoder(groups, torch.device(layout.leader_device))
    return ParallelRuntime(layout, groups, processes, None, decoder)
