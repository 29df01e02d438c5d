"""`Idempotency-Key` on create, remix and extend; the queue limit holds under concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, build_app
from helios_serve.compose.single import build_parts
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig

from .test_app import create, make_client, wait

BODY = {"prompt": "a fox", "size": "64x64", "num_frames": "33"}


def test_same_key_same_request_gives_the_same_job(tmp_path: Path) -> None:
    with make_client(tmp_path, step_delay=0.01) as client:
        headers = {"Idempotency-Key": "retry-1"}
        first = client.post("/v1/videos", data=BODY, headers=headers).json()
        second = client.post("/v1/videos", data=BODY, headers=headers).json()
        assert first["id"] == second["id"]
        # no seed was given: the retry must not draw a new one into another video
        assert first["seed"] == second["seed"]
        other = client.post("/v1/videos", data={**BODY, "prompt": "a cat"}, headers=headers)
        assert other.status_code == 409, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        listing = client.get("/v1/videos").json()
        assert [v["id"] for v in listing["data"]] == [first["id"]]
        fresh = client.post("/v1/videos", data=BODY, headers={"Idempotency-Key": "retry-2"})
        assert fresh.json()["id"] != first["id"]
        bad = client.post("/v1/videos", data=BODY, headers={"Idempotency-Key": "a b"})
        assert bad.status_code == 400


def test_a_deleted_videos_key_is_not_silently_reused(tmp_path: Path) -> None:
    with make_client(tmp_path, step_delay=0.01) as client:
        headers = {"Idempotency-Key": "k"}
        made = client.post("/v1/videos", data=BODY, headers=headers).json()
        wait(client, made["id"])
        assert client.delete(f"/v1/videos/{made['id']}").status_code == 200
        again = client.post("/v1/videos", data=BODY, headers=headers)
        assert again.status_code == 409
        assert made["id"] in again.json()["error"]["message"]


def test_remix_and_extend_keys(tmp_path: Path) -> None:
    with make_client(tmp_path, step_delay=0.0) as client:
        source = create(client)
        assert wait(client, source["id"])["status"] == "completed"
        headers = {"Idempotency-Key": "same"}
        remix = [
            client.post(
                f"/v1/videos/{source['id']}/remix", json={"prompt": "dusk"}, headers=headers
            ).json()
            for _ in range(2)
        ]
        assert remix[0]["id"] == remix[1]["id"]
        body = {"video": {"id": source["id"]}, "prompt": "dawn", "seconds": "2"}
        extend = [
            client.post("/v1/videos/extensions", json=body, headers=headers).json()
            for _ in range(2)
        ]
        # one key, two routes: each route keeps its own
        assert extend[0]["id"] == extend[1]["id"] != remix[0]["id"]
        assert extend[0]["extension_mode"] == "state"
        done = wait(client, extend[0]["id"])
        assert done["status"] == "completed", done
        assert done["num_frames"] == 66 + 48  # the source and 2 s at 24 fps, exactly
        assert done["seconds"] == "4.75"


@pytest.mark.parametrize("keyed", [False, True])
def test_concurrent_creates_respect_the_queue_limit_and_keys(tmp_path: Path, keyed: bool) -> None:
    engine = FakeEngine(FakeEngineConfig(step_delay_s=5.0))  # nothing finishes meanwhile
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    app = build_app(engine, jobs=JobApi(parts, ApiConfig(max_queue=10)))

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            headers = {"Idempotency-Key": "one"} if keyed else {}
            return await asyncio.gather(
                *(http.post("/v1/videos", data=BODY, headers=headers) for _ in range(60))
            )

    with TestClient(app):  # the runner claims at most one job meanwhile
        responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}
    ids = {r.json()["id"] for r in responses if r.status_code == 200}
    if keyed:
        assert len(ids) == 1
        assert codes.count(200) == 60
    else:
        assert 10 <= len(ids) <= 11  # 10 queued, plus the one the runner may have claimed
        assert codes.count(429) == 60 - len(ids)


def test_ended_jobs_keep_no_working_files(tmp_path: Path) -> None:
    with make_client(tmp_path, step_delay=0.0) as client:
        ok = create(client)
        bad = create(client, prompt="a fox [fail]")
        assert wait(client, ok["id"])["status"] == "completed"
        assert wait(client, bad["id"])["status"] == "failed"
    videos = tmp_path / "videos"
    assert sorted(p.name for p in (videos / ok["id"]).iterdir()) == [
        "spritesheet.jpg",
        "state.safetensors",
        "state.safetensors.sha256",
        "tail.mp4",
        "thumbnail.jpg",
        "video.mp4",
    ]
    assert not (videos / bad["id"] / "chunks").exists()
    # a crash between "completed" and the cleanup leaves segments: the next start drops them
    leftover = videos / ok["id"] / "chunks"
    leftover.mkdir()
    (leftover / "chunk-000000.mp4").write_bytes(b"x")
    build_parts(FakeEngine(), tmp_path).store.close()
    assert not leftover.exists()
