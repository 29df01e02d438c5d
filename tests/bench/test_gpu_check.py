"""The GPU check (issue 20) runs end to end on a toy of the 14B architecture on the CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

from helios_bench import gpu_check


def test_gpu_check_runs_every_phase_on_the_cpu(tmp_path: Path) -> None:
    argv = [
        "--tiny", "--out", str(tmp_path), "--compile-backend", "none", "--chunks", "3",
        "--quality-chunks", "2", "--diffusers-chunks", "1", "--decode-repeats", "1",
        "--warmups", "0",
    ]  # fmt: skip
    assert gpu_check.main(argv) == 0
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    for phase in gpu_check.PHASES:
        assert not {"error", "skipped"} & set(results[phase]), results[phase]
    runs = [results["diffusers_eager"], results["diffusers_compiled"]]
    for phase in ("stream_exact", "stream_fast"):
        runs += [results[phase]["serial"], results[phase]["overlapped"]]
    assert all(run["fps_steady"] > 0 for run in runs)
    assert all(run["mean_decode_s"] > 0 for run in runs)
    assert "EMULATED" in results["stream_fast"]["fp8"]
    assert results["stream_fast"]["fp8_layers"] == 3 * 6  # 3 blocks, 6 linears each
    latents, frames = results["quality"]["latents"], results["quality"]["frames"]
    assert len(latents) == len(frames) == 2
    assert all(lat["finite"] for lat in latents)
    assert all(0 < lat["max_rel"] < 0.2 for lat in latents)  # FP8-sized, not zero, not noise
    assert all(0.99 < lat["cosine"] < 1 for lat in latents)
    assert all(10 < fr["psnr_db"] < math.inf for fr in frames)
    variants = {row["variant"]: row for row in results["decode"]["variants"]}
    assert len(variants) == 8  # the stock fp32 reference and 7 variants (no compile here)
    for name in ("+ frames 1..8 in one call", "engine default, groups [1]*8"):
        assert variants[name]["seconds"] > 0
        assert variants[name]["psnr_db"] > 80  # float32 on the CPU: rounding only
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| stream, fast (FP8), serial |" in table
    assert "Decode variants" in table


def test_a_phase_past_the_budget_is_skipped_and_said_so(tmp_path: Path) -> None:
    argv = ["--tiny", "--out", str(tmp_path), "--phases", "quality", "--budget-s", "1e-9"]
    assert gpu_check.main(argv) == 0
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "estimate" in results["quality"]["skipped"]
    assert "not run" in (tmp_path / "gpu_check.md").read_text()
