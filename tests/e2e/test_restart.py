"""Jobs survive `kill -9`: completed ones are still served, interrupted and queued ones run."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
SMALL = {"prompt": "a lighthouse in fog", "size": "128x128", "num_frames": "33"}


def submit(server: LiveServer, **fields: str) -> str:
    with server.client() as http:
        response = http.post("/v1/videos", data={**SMALL, **fields})
    assert response.status_code == 200, response.text
    video_id: str = response.json()["id"]
    return video_id


def content_digest(server: LiveServer, video_id: str) -> str:
    with server.client() as http:
        response = http.get(f"/v1/videos/{video_id}/content")
    assert response.status_code == 200
    return hashlib.sha256(response.content).hexdigest()


def test_kill_9_mid_job_loses_nothing(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, "tiny", "tiny")
    server.start()
    try:
        done = submit(server)
        assert server.wait_done(done)["status"] == "completed"
        digest = content_digest(server, done)
        long_job = submit(server, size="128x128", num_frames="165", seed="5")
        queued = [submit(server, seed=str(i)) for i in range(3)]
        deadline = time.monotonic() + 120
        with server.client() as http:
            while http.get(f"/v1/videos/{long_job}").json()["progress"] < 10:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        server.kill()  # SIGKILL mid-job
    finally:
        server.kill()

    server.start()
    try:
        assert content_digest(server, done) == digest
        for video_id in [long_job, *queued]:
            video = server.wait_done(video_id, timeout=900)
            assert video["status"] == "completed", video
        with server.client() as http:
            listing = http.get("/v1/videos", params={"limit": 100}).json()
        assert {v["status"] for v in listing["data"]} == {"completed"}
        assert len(listing["data"]) == 5
        assert not list((tmp_path / "videos").rglob("*.part"))
        assert server.stop() == 0
    finally:
        server.kill()


def test_sigterm_requeues_the_running_job(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, "tiny", "tiny")
    server.start()
    try:
        job = submit(server, size="128x128", num_frames="330")
        with server.client() as http:
            while http.get(f"/v1/videos/{job}").json()["status"] != "in_progress":
                time.sleep(0.1)
        assert server.stop() == 0
    finally:
        server.kill()
    server.start()
    try:
        with server.client() as http:
            assert http.get(f"/v1/videos/{job}").json()["status"] in ("queued", "in_progress")
            http.delete(f"/v1/videos/{job}")
    finally:
        server.kill()
