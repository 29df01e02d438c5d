"""The ranks of one engine: started by rank 0, joined in one torch.distributed world.

Rank 0 (the engine process, or `helios generate` itself) starts the other ranks as its own
children, so they live and die inside the supervised engine: each dies with rank 0
(PR_SET_PDEATHSIG), and rank 0 exits as soon as one of them dies (a watchdog), which the engine's
supervisor sees as an engine exit: restart, and jobs resume from their last saved chunk. A rank
that hangs stalls rank 0's next collective; the supervisor's stall timeout covers it.

Every rank builds the same process groups in the same order (`RankGroups.build`): torch creates
a group collectively over the whole world.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from helios_serve.engine.parallel.layout import ParallelLayout

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.2
RANK_DIED_EXIT = 70
"""Rank 0's exit status when another rank died (the supervisor restarts the engine)."""
JOIN_TIMEOUT = timedelta(minutes=10)
"""How long ranks wait for each other at start (a 14B load per rank takes minutes)."""
IDLE_TIMEOUT = timedelta(days=365)
"""How long a rank waits for rank 0's next call: as long as the engine is idle (a rank that
is gone is seen by the watchdog, a hung one by the supervisor's stall timeout)."""


@dataclass(frozen=True)
class RankSpec:
    """What a rank other than 0 needs to start (pickled to it)."""

    rank: int
    layout: ParallelLayout
    checkpoint: Path
    init_method: str
    options: Any
    """`RankOptions`: how rank 0 loaded (dtypes, attention backend, precision, compile)."""


@dataclass
class RankGroups:
    """The process groups of one layout, as seen from one rank."""

    rank: int
    layout: ParallelLayout
    control: Any
    """gloo, over the transformer ranks: rank 0 announces each forward here."""
    transformer: Any
    """The device backend over the transformer ranks: inputs are broadcast here."""
    mesh: DeviceMesh | None
    """(cfg, ring, ulysses) over the transformer ranks, when the sequence is split."""
    decode: Any
    """Rank 0 and the decode rank (None without one): latents go one way, frames the other."""

    @classmethod
    def build(cls, layout: ParallelLayout, rank: int) -> RankGroups:
        transformer_ranks = list(range(layout.transformer_ranks))
        control = dist.new_group(transformer_ranks, backend="gloo", timeout=IDLE_TIMEOUT)
        transformer = dist.new_group(transformer_ranks)
        mesh = None
        if layout.context_parallel > 1:
            device_type = torch.device(layout.leader_device).type
            shape = (layout.cfg, layout.ring, layout.ulysses)
            mesh = DeviceMesh(
                device_type,
                torch.arange(layout.transformer_ranks).view(shape),
                mesh_dim_names=("cfg", "ring", "ulysses"),
            )
        decode = None
        if layout.decode_rank is not None:
            decode = dist.new_group([0, layout.decode_rank], timeout=IDLE_TIMEOUT)
        return cls(rank, layout, control, transformer, mesh, decode)

    @property
    def is_transformer_rank(self) -> bool:
        return self.rank < self.layout.transformer_ranks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def join_world(layout: ParallelLayout, rank: int, init_method: str) -> RankGroups:
    """Join the world as `rank` and build the groups (every rank calls this)."""
    device = torch.device(layout.device_of(rank))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(
        backend,
        init_method=init_method,
        rank=rank,
        world_size=layout.world_size,
        timeout=JOIN_TIMEOUT,
    )
    return RankGroups.build(layout, rank)


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog and the closed world end the ranks instead


class RankProcesses:
    """Rank 0's handle on ranks 1..N-1: started together, watched, stopped together."""

    def __init__(self, specs: list[RankSpec]) -> None:
        from helios_serve.engine.parallel import follower

        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA
        self._processes: list[BaseProcess] = []
        for spec in specs:
            process = ctx.Process(
                target=follower.main, args=(spec,), name=f"helios-rank-{spec.rank}", daemon=True
            )
            process.start()
            self._processes.append(process)
        self._stopping = threading.Event()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def watch(self) -> None:
        """Exit this process when another rank dies: its collectives would wait forever."""
        threading.Thread(target=self._watch, daemon=True, name="helios-rank-watch").start()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_S):
            for process in self._processes:
                if not process.is_alive():
                    logger.error(
                        "engine rank %s exited (%s): stopping this engine so it restarts",
                        process.name,
                        process.exitcode,
                    )
                    self.kill()
                    os._exit(RANK_DIED_EXIT)

    def kill(self) -> None:
        self._stopping.set()
        for process in self._processes:
            with contextlib.suppress(OSError, ValueError):
                process.kill()
        for process in self._processes:
            process.join(timeout=10)


def start_ranks(layout: ParallelLayout, make_spec: Any) -> tuple[RankProcesses, RankGroups]:
    """Start ranks 1..N-1 (`make_spec(rank, init_method)` describes each), join as rank 0."""
    init_method = f"tcp://127.0.0.1:{free_port()}"
    processes = RankProcesses([make_spec(r, init_method) for r in range(1, layout.world_size)])
    processes.watch()  # from now: a rank that fails to load ends this process too
    try:
        groups = join_world(layout, 0, init_method)
    except BaseException:
        processes.kill()
        raise
    return processes, groups
