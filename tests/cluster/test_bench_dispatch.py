"""`helios bench-dispatch` (the dispatch overhead benchmark of benchmarks/results/dispatch-*)
runs end to end on a small workload against the real PostgreSQL and S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import BUCKET, LocalCluster


def test_bench_dispatch_small_run_reports_every_dispatcher(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    database = local_cluster.postgres.create_database("helios_bench_smoke")
    out = tmp_path / "dispatch"
    command = [
        *(sys.executable, "-m", "helios_serve.cli", "bench-dispatch"),
        *("--database", database, "--storage", f"s3://{BUCKET}/bench-smoke"),
        *("--jobs", "6", "--chunks", "1", "--steps", "2", "--step-delay", "0.01"),
        *("--workers", "1,2", "--out", str(out)),
    ]
    env = {**os.environ, **local_cluster.env}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["results"]) == {"in_process", "cluster_1", "cluster_2"}
    for result in report["results"].values():
        assert result["completed"] == result["jobs"] == 6
        assert result["claim_to_first_step_ms"]["p50"] >= 0
    assert report["throughput_ratio_2_vs_1_workers"] > 0
