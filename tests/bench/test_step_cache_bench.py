"""`helios bench-step-cache` on the tiny Base model: four streams, their frames compared."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from helios_serve.bench.step_cache import _measure_preset, add_arguments, difference, table
from helios_serve.core.types import Variant
from helios_serve.engine.loader import LoadedModel

CACHE = '{"max_warmup_steps": 2, "residual_diff_threshold": 1}'
"""Threshold 1: every step the warm-up and the streak limit allow is cached (not weight-bound)."""


def test_difference_of_uint8_frames() -> None:
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    assert difference([a], [b]) == (None, 0)
    b[0, 0, 0, 0] = 255
    psnr, max_error = difference([a], [b])
    assert max_error == 255
    assert psnr is not None
    assert 10 < psnr < 30


def test_four_runs_on_tiny_base(tiny_model: Callable[[str], LoadedModel]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = ["--steps", "4", "--chunks", "1", "--warmup", "0", "--step-cache", CACHE]
    args = parser.parse_args(flags)
    results = _measure_preset(Variant.BASE, tiny_model("tiny-base"), None, args)
    by_run = {r.run: r for r in results}
    assert list(by_run) == ["full", "batched", "cached", "cached+batched"]
    assert by_run["full"].psnr_db is None
    assert by_run["full"].cached_calls == 0
    assert by_run["batched"].max_error <= 1  # rounding only
    # 4 steps, 2 warm-up: steps 2 and 3 cached, per branch
    assert by_run["cached"].cached_calls == 0.5
    assert by_run["cached"].step_cache == "F1B0_W2MC3_R1"
    assert "cached+batched" in table(results)
