"""The engine runs in a supervised process: a hang or a crash inside it is detected, the engine
restarted, the API answers throughout, and the job resumes from its last saved chunk."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
JOB = {
    "prompt": "a kite over a beach",
    "size": "128x128",
    "num_frames": "132",
    "seed": "4",
    "extra_params": '{"pyramid_num_inference_steps_list": [1, 1, 1]}',
}


class Prober(threading.Thread):
    """Hits /health, /ready and the job list every 100 ms; records status codes and times."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.seen: list[tuple[str, int, float]] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.stop.is_set():
                for path in ("/health", "/ready", "/v1/videos"):
                    start = time.monotonic()
                    code = http.get(path).status_code
                    self.seen.append((path, code, time.monotonic() - start))
                time.sleep(0.1)


def submit(server: LiveServer) -> str:
    with server.client() as http:
        response = http.post("/v1/videos", data=JOB)
    assert response.status_code == 200, response.text
    video_id: str = response.json()["id"]
    return video_id


def digest(server: LiveServer, video_id: str) -> str:
    with server.client() as http:
        return hashlib.sha256(http.get(f"/v1/videos/{video_id}/content").content).hexdigest()


def restarts(server: LiveServer) -> str:
    with server.client() as http:
        text = http.get("/metrics").text
    return "\n".join(line for line in text.splitlines() if "engine_restarts_total{" in line)


@dataclass
class FaultyServer(LiveServer):
    """A live server whose engine hangs while `hang_file` exists (`faulty_serve`)."""

    hang_file: Path = Path("hang")

    def argv(self) -> list[str]:
        python, _, _, *args = super().argv()  # python -m helios_serve.cli serve ...
        launch = f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        launch += "from tests.e2e.faulty_serve import main; main()"
        return [python, "-c", launch, str(self.hang_file), *args]


@pytest.fixture
def hang_file(tmp_path: Path) -> Path:
    return tmp_path / "hang"


@pytest.fixture
def server(tmp_path: Path, hang_file: Path) -> LiveServer:
    live = FaultyServer(
        tmp_path / "data", "tiny", "tiny", ["--engine-stall-timeout", "15"], hang_file=hang_file
    )
    live.start()
    yield live
    live.kill()


def test_a_hung_engine_is_restarted_and_the_job_resumes(
    server: LiveServer, hang_file: Path
) -> None:
    hang_file.write_text("1")
    prober = Prober(server.url)
    prober.start()
    job = submit(server)
    done = server.wait_done(job, timeout=600)
    prober.stop.set()
    prober.join()
    assert done["status"] == "completed", done
    assert not hang_file.exists(), "the engine never reached the hook"
    # the hang is inside chunk 2, denoised ahead while chunk 1 decodes (prefetch): chunk 0
    # was saved, chunk 1 not yet, so the retry starts at chunk 1
    assert done["resumed_from_chunk"] == 1
    assert 'reason="stalled"} 1.0' in restarts(server)
    # the API answered all along; /ready said 503 while the engine was being replaced
    assert {code for path, code, _ in prober.seen if path != "/ready"} == {200}
    assert max(t for _, _, t in prober.seen) < 3.0
    ready = [code for path, code, _ in prober.seen if path == "/ready"]
    assert 503 in ready
    assert ready[-1] == 200
    again = submit(server)  # uninterrupted: the same bytes
    assert server.wait_done(again, timeout=600)["status"] == "completed"
    assert digest(server, again) == digest(server, job)


def test_a_killed_engine_is_restarted_and_a_job_that_kills_it_twice_fails(
    server: LiveServer, hang_file: Path
) -> None:
    job = submit(server)
    assert server.proc is not None
    deadline = time.monotonic() + 120
    with server.client() as http:
        while http.get(f"/v1/videos/{job}").json()["chunks_done"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    children = subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert children, "no engine process under the server"
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    done = server.wait_done(job, timeout=600)
    assert done["status"] == "completed", done
    assert done["resumed_from_chunk"] is not None
    assert 'reason="exited"} 1.0' in restarts(server)

    hang_file.write_text("2")  # this job hangs the engine twice
    doomed = submit(server)
    failed = server.wait_done(doomed, timeout=600)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "engine_failed"
    after = submit(server)  # and the engine serves the next job normally
    assert server.wait_done(after, timeout=600)["status"] == "completed"
