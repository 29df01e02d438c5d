"""The `helios bench-dispatch` command line (the benchmark itself, `bench.dispatch`, imports the
cluster's libraries: only when it runs)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path


def register_dispatch(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench-dispatch", help="dispatch overhead: in-process vs cluster workers")
    p.add_argument("--database", default=os.environ.get("HELIOS_DATABASE"), required=False)
    p.add_argument("--storage", default=os.environ.get("HELIOS_STORAGE"), required=False)
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--chunks", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="fake denoising steps per chunk")
    p.add_argument("--step-delay", type=float, default=0.05, help="seconds each step sleeps")
    p.add_argument("--workers", type=_ints, default=(1, 4), help="cluster sizes, e.g. 1,4")
    p.add_argument("--out", type=Path, default=None, help="write PREFIX.json")
    p.set_defaults(handler=_run)


def _ints(text: str) -> Sequence[int]:
    return tuple(int(v) for v in text.split(","))


def _run(args: argparse.Namespace) -> int:
    from helios_bench.dispatch import main

    return main(args)
