"""A rank of a parallel engine dies: the engine is restarted whole and the job resumes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
JOB = {
    "prompt": "a kite over a beach",
    "size": "128x128",
    "num_frames": "99",  # 3 chunks: the kill lands while chunk 2 is still to come
    "seed": "4",
    "extra_params": '{"pyramid_num_inference_steps_list": [1, 1, 1]}',
}


def spawned_children(pid: int) -> list[int]:
    """`pid`'s children started by multiprocessing's spawn (not its resource tracker)."""
    listed = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    found = []
    for child in map(int, listed):
        with open(f"/proc/{child}/cmdline", "rb") as cmdline:
            if b"spawn_main" in cmdline.read():
                found.append(child)
    return found


def test_a_killed_rank_restarts_the_engine_and_the_job_resumes(tmp_path: Path) -> None:
    flags = ["--device", "cpu", "--parallel", "ulysses=2", "--engine-stall-timeout", "60"]
    server = LiveServer(tmp_path / "data", "tiny", "tiny", flags)
    server.start()
    try:
        with server.client() as http:
            job = http.post("/v1/videos", data=JOB).json()["id"]
            deadline = time.monotonic() + 300
            while http.get(f"/v1/videos/{job}").json()["chunks_done"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert server.proc is not None
            [engine] = spawned_children(server.proc.pid)
            [rank1] = spawned_children(engine)
            os.kill(rank1, signal.SIGKILL)
            done = server.wait_done(job, timeout=600)
            assert done["status"] == "completed", done
            assert done["resumed_from_chunk"] is not None
            metrics = http.get("/metrics").text
            assert 'engine_restarts_total{reason="exited"} 1.0' in metrics
            again = http.post("/v1/videos", data=JOB).json()["id"]  # uninterrupted
            assert server.wait_done(again, timeout=600)["status"] == "completed"
            first, second = (
                hashlib.sha256(http.get(f"/v1/videos/{v}/content").content).hexdigest()
                for v in (job, again)
            )
            assert first == second
    finally:
        server.kill()
