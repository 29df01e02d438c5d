"""Chunk checkpoints end to end: a job killed mid-way resumes at its last saved chunk, and its
MP4 is byte for byte the one an uninterrupted run makes."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
FIVE_CHUNKS = {
    "prompt": "a paper boat drifts down a rainy street",
    "size": "128x128",
    "num_frames": "165",
    "seed": "11",
    "extra_params": '{"pyramid_num_inference_steps_list": [1, 1, 1]}',
}


def submit(server: LiveServer) -> str:
    with server.client() as http:
        response = http.post("/v1/videos", data=FIVE_CHUNKS)
    assert response.status_code == 200, response.text
    video_id: str = response.json()["id"]
    return video_id


def mp4_digest(server: LiveServer, video_id: str) -> str:
    with server.client() as http:
        response = http.get(f"/v1/videos/{video_id}/content")
    assert response.status_code == 200, response.text
    return hashlib.sha256(response.content).hexdigest()


def test_kill_9_mid_job_resumes_at_its_last_chunk_with_identical_bytes(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, "tiny", "tiny")
    server.start()
    try:
        job = submit(server)
        deadline = time.monotonic() + 300
        with server.client() as http:
            while True:
                video = http.get(f"/v1/videos/{job}").json()
                if video["chunks_done"] >= 2:
                    break
                assert time.monotonic() < deadline, video
                time.sleep(0.05)
        server.kill()  # SIGKILL between chunks 2 and 5
    finally:
        server.kill()
    assert video["status"] == "in_progress", "the job finished before the kill: nothing to test"
    saved = video["chunks_done"]
    assert 2 <= saved < 5

    server.start()
    try:
        resumed = server.wait_done(job, timeout=900)
        assert resumed["status"] == "completed", resumed
        # the job's own record says where the second attempt began
        assert resumed["resumed_from_chunk"] is not None
        assert resumed["resumed_from_chunk"] >= saved
        assert resumed["chunks_done"] == 5
        assert resumed["num_frames"] == 165  # exactly those asked
        digest = mp4_digest(server, job)

        fresh = submit(server)  # the same request, uninterrupted
        done = server.wait_done(fresh, timeout=900)
        assert done["status"] == "completed", done
        assert done["resumed_from_chunk"] is None
        assert mp4_digest(server, fresh) == digest
    finally:
        server.kill()
    folder = tmp_path / "videos" / job
    assert sorted(p.name for p in folder.iterdir()) == [
        "spritesheet.jpg",
        "state.safetensors",
        "state.safetensors.sha256",
        "tail.mp4",
        "thumbnail.jpg",
        "video.mp4",
    ]
