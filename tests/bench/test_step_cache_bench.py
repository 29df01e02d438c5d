"""`helios bench-step-cache`: four streams, their frames compared; `--arch small` runs the
`--arch 14b` code path (random weights, a toy of the architecture) on the CPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from helios_bench.step_cache import RunResult, add_arguments, difference, run, table

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


def test_four_runs_of_the_14b_code_path_on_a_toy(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "bench.json"
    flags = ["--arch", "small", "--presets", "base", "--steps", "4", "--chunks", "1"]
    args = parser.parse_args([*flags, "--warmup", "0", "--step-cache", CACHE, "--out", str(out)])
    assert run(args) == 0
    report = json.loads(out.read_text())
    assert report["versions"]["cache-dit"] == "1.5.3"
    results = [RunResult(**r) for r in report["results"]]
    by_run = {r.run: r for r in results}
    assert list(by_run) == ["full", "batched", "cached", "cached+batched"]
    assert by_run["full"].psnr_db is None
    assert by_run["full"].cached_calls == 0
    assert by_run["batched"].max_error <= 1  # rounding only
    # 4 steps, 2 warm-up: steps 2 and 3 cached, per branch
    assert by_run["cached"].cached_calls == 0.5
    assert by_run["cached"].step_cache == "F1B0_W2MC3_R1"
    assert "cached+batched" in table(results)
