"""The whole /v1/videos app on a FakeEngine: progress, failures, queue, cancel, auth, content."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, build_app
from helios_serve.compose.single import build_parts
from helios_serve.engine.fake import FAIL_MARKER, OOM_MARKER, FakeEngine, FakeEngineConfig
from helios_serve.jobs.sqlite.store import JobStore
from helios_serve.web.auth import Access


def make_client(
    tmp_path: Path, step_delay: float = 0.0, api_keys: tuple[str, ...] = (), **config: object
) -> TestClient:
    engine = FakeEngine(FakeEngineConfig(step_delay_s=step_delay))
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    jobs = JobApi(parts, ApiConfig(**config))  # type: ignore[arg-type]
    return TestClient(build_app(engine, jobs=jobs, access=Access(api_keys)))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, step_delay=0.01) as c:
        yield c


def create(client: TestClient, prompt: str = "a fox", **fields: str) -> dict[str, object]:
    data = {"prompt": prompt, "size": "64x64", "num_frames": "66", **fields}
    response = client.post("/v1/videos", data=data)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def wait(client: TestClient, video_id: object, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        response = client.get(f"/v1/videos/{video_id}")
        assert response.status_code == 200
        video: dict[str, object] = response.json()
        seen.append(int(video["progress"]))  # type: ignore[call-overload]
        if video["status"] in ("completed", "failed"):
            video["_progress_seen"] = seen
            return video
        time.sleep(0.02)
    raise TimeoutError(video_id)


def test_job_runs_with_rising_progress_and_content(client: TestClient) -> None:
    video = create(client)
    assert video["status"] == "queued"
    assert (video["num_frames"], video["size"], video["fps"]) == (66, "64x64", 24)
    done = wait(client, video["id"])
    assert done["status"] == "completed"
    seen = done["_progress_seen"]
    assert seen == sorted(seen)  # type: ignore[type-var]
    assert len(set(seen)) >= 3, seen  # type: ignore[arg-type]
    assert done["progress"] == 100
    assert done["file_name"] == f"{video['id']}.mp4"  # vLLM-Omni's naming
    assert set(done["stage_durations"]) == {"denoise", "vae_decode", "encode_and_save", "assemble"}
    assert done["inference_time_s"] is not None
    mp4 = client.get(f"/v1/videos/{video['id']}/content")
    assert mp4.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(mp4.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 66
    for variant in ("thumbnail", "spritesheet"):
        url = f"/v1/videos/{video['id']}/content"
        image = client.get(url, params={"variant": variant})
        assert image.headers["content-type"] == "image/webp"  # OpenAI's documented type
        assert Image.open(io.BytesIO(image.content)).format == "WEBP"
        jpeg = client.get(url, params={"variant": variant}, headers={"Accept": "image/jpeg"})
        assert jpeg.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"


def test_thumbnails_are_thumbnail_sized(client: TestClient) -> None:
    """A card list loads one per video: a 640x384 job's is 320x192, not the whole frame."""
    video = create(client, size="640x384", num_frames="33")
    assert wait(client, video["id"])["status"] == "completed"
    url = f"/v1/videos/{video['id']}/content"
    for accept in ("image/webp", "image/jpeg"):
        image = client.get(url, params={"variant": "thumbnail"}, headers={"Accept": accept})
        assert Image.open(io.BytesIO(image.content)).size == (320, 192), accept


def test_poll_header_and_compact_json(client: TestClient) -> None:
    video = create(client)
    response = client.get(f"/v1/videos/{video['id']}")
    assert response.headers["openai-poll-after-ms"]
    assert f'"id":"{video["id"]}"' in response.text


@pytest.mark.parametrize(
    ("marker", "code"), [(FAIL_MARKER, "internal_error"), (OOM_MARKER, "out_of_memory")]
)
def test_a_failing_job_fails_alone(client: TestClient, marker: str, code: str) -> None:
    bad = create(client, prompt=f"boom {marker}")
    good = create(client)
    failed = wait(client, bad["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == code  # type: ignore[index]
    message = failed["error"]["message"]  # type: ignore[index]
    assert message
    # no exception text, class name or path reaches the client; the log has them
    for internal in ("injected", "Fake", "Error", "/"):
        assert internal not in message, message
    assert wait(client, good["id"])["status"] == "completed"
    assert client.get(f"/v1/videos/{bad['id']}/content").status_code == 409


def test_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    with make_client(tmp_path, step_delay=0.2, max_queue=1) as client:
        create(client)  # claimed soon
        time.sleep(0.3)
        create(client)  # waits
        response = client.post("/v1/videos", data={"prompt": "x", "size": "64x64"})
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["error"]["code"] == "queue_full"


def test_delete_cancels_a_running_job_and_the_next_runs(tmp_path: Path) -> None:
    with make_client(tmp_path, step_delay=0.1) as client:
        first = create(client, num_frames="330")
        second = create(client)
        deadline = time.monotonic() + 10
        while client.get(f"/v1/videos/{first['id']}").json()["status"] != "in_progress":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        deleted = client.delete(f"/v1/videos/{first['id']}").json()
        assert deleted == {"id": first["id"], "object": "video.deleted", "deleted": True}
        assert client.get(f"/v1/videos/{first['id']}").status_code == 404
        assert wait(client, second["id"])["status"] == "completed"
        assert not (tmp_path / "videos" / str(first["id"])).exists()


class _DeletedAtChunkSave(JobStore):
    """A store whose job is deleted the moment its first chunk is recorded: a `DELETE` landing
    between the chunk's last step and its save (the race a client's DELETE of a running job
    loses or wins by microseconds)."""

    deleted = False

    def record_chunk(self, job_id: str, *args: Any, **kwargs: Any) -> None:
        if not self.deleted:  # the first job only
            self.deleted = True
            self.delete(job_id)
        super().record_chunk(job_id, *args, **kwargs)


def test_a_job_deleted_while_running_is_no_failure_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine(FakeEngineConfig())
    store = _DeletedAtChunkSave(tmp_path / "jobs.db")
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05, store=store)
    app = build_app(engine, jobs=JobApi(parts, ApiConfig()))
    with caplog.at_level(logging.INFO), TestClient(app) as client:
        gone = create(client, num_frames="99")
        deadline = time.monotonic() + 30
        while client.get(f"/v1/videos/{gone['id']}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert wait(client, create(client, prompt="next")["id"])["status"] == "completed"
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]
    assert any("deleted while running" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "videos" / str(gone["id"])).exists()


def test_content_before_completion_is_409(tmp_path: Path) -> None:
    with make_client(tmp_path, step_delay=0.2) as client:
        video = create(client)
        response = client.get(f"/v1/videos/{video['id']}/content")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "video_not_ready"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/videos/..%2F..%2Fetc%2Fpasswd",
        "/v1/videos/video_x",
        "/v1/videos/video_" + "0" * 32 + "/content",
        "/v1/videos/%2Fetc%2Fpasswd/content",
    ],
)
def test_unknown_and_path_like_ids_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_list_paginates_with_cursor(client: TestClient) -> None:
    ids = [create(client, prompt=f"p{i}")["id"] for i in range(5)]
    page = client.get("/v1/videos", params={"limit": 2, "order": "asc"}).json()
    assert [v["id"] for v in page["data"]] == ids[:2]
    assert page["has_more"] is True
    rest = client.get(
        "/v1/videos", params={"limit": 10, "order": "asc", "after": page["last_id"]}
    ).json()
    assert [v["id"] for v in rest["data"]] == ids[2:]
    assert rest["has_more"] is False


def test_remix_keeps_settings_with_a_new_prompt(client: TestClient) -> None:
    source = create(client, seed="7")
    early = client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "a dog"})
    assert early.status_code == 409  # only a completed video can be remixed
    assert wait(client, source["id"])["status"] == "completed"
    remix = client.post(f"/v1/videos/{source['id']}/remix", data={"prompt": "a dog"}).json()
    assert remix["remixed_from_video_id"] == source["id"]
    assert (remix["prompt"], remix["seed"], remix["size"]) == ("a dog", 7, "64x64")
    assert wait(client, remix["id"])["status"] == "completed"
    for body in ({"prompt": "  "}, {"prompt": "a\x00b"}, {"prompt": "x", "seed": 3}):
        bad = client.post(f"/v1/videos/{source['id']}/remix", json=body)
        assert bad.status_code == 400, body


def test_sync_returns_the_mp4(client: TestClient) -> None:
    response = client.post(
        "/v1/videos/sync", data={"prompt": "x", "size": "64x64", "num_frames": "33"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 33


def test_metrics_expose_queue_jobs_and_chunk_latency(client: TestClient) -> None:
    wait(client, create(client)["id"])
    text = client.get("/metrics").text
    assert "helios_queue_depth 0.0" in text
    assert 'helios_jobs{status="completed"} 1.0' in text
    assert "helios_chunk_seconds_count 2.0" in text


def test_api_keys_guard_every_route_but_health(tmp_path: Path) -> None:
    with make_client(tmp_path, api_keys=("s3cret",)) as client:
        assert client.get("/health").status_code == 200
        for method, path in [
            ("GET", "/v1/models"),
            ("GET", "/v1/videos"),
            ("POST", "/v1/videos"),
            ("GET", "/metrics"),
        ]:
            response = client.request(method, path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "invalid_api_key"
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
