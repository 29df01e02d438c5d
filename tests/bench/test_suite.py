"""The GPU measurement suite runs end to end on a toy of the 14B architecture on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

from helios_bench import suite


def test_suite_writes_every_phase_and_the_stream_equals_diffusers(tmp_path: Path) -> None:
    argv = [
        "--out", str(tmp_path), "--arch", "small", "--device", "cpu", "--width", "64",
        "--height", "64", "--chunks", "2", "--text-tokens", "8", "--steps", "1,1,1",
        "--backends", "native", "--phases", "baseline,numerics,profile,vae", "--no-vae-stream",
        "--repeats", "1",
    ]  # fmt: skip
    # profile before vae: the vae phase leaves the VAE in bf16, whose conv3d is slow on a CPU
    assert suite.main(argv) == 0
    results = json.loads((tmp_path / "suite.json").read_text())
    for key in ("device", "command", "torch", "date"):
        assert results[key]
    for phase in ("baseline", "vae", "numerics", "profile"):
        assert "error" not in results[phase], results[phase]
    baseline = json.loads((tmp_path / "baseline.json").read_text())
    config = baseline["configs"][0]
    for side in ("stream", "diffusers"):
        for key in ("fps_steady", "first_chunk_s", "peak_memory_gb"):
            assert config[side][key] > 0
    errors = results["numerics"]["eager stream vs eager diffusers [1,1,1]"]
    assert len(errors) == 2
    assert all(e["finite"] and e["max_rel"] < 1e-5 for e in errors)
    assert 0 < results["vae"]["frames_max_abs_err"] < 0.5
    assert (tmp_path / "profile.txt").read_text().strip()
