"""The attacks of issue 10 on the job API: cross-origin pages, a full disk under the runner and
the API, JSON too deep or too wide, damaged rows in the job store."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts, prepare_store
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
from helios_serve.errors import HeliosError, InsufficientStorageError
from helios_serve.jobs.records import StoreUnavailableError
from helios_serve.jobs.sqlite.store import JobStore
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.web.auth import Access

from .test_app import create, wait

FORM = {"prompt": "a fox", "size": "64x64", "num_frames": "66"}


def _np_upscale(frames: Any, scale: int) -> Any:
    return frames


# -- 3. cross-origin access: open for the real-time routes only -----------------------------


@pytest.mark.parametrize("allowed", [(), ("https://app.example",)])
def test_job_api_and_metrics_are_closed_to_other_origins(
    tmp_path: Path, allowed: tuple[str, ...]
) -> None:
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    app = build_app(
        engine,
        jobs=JobApi(parts, ApiConfig()),
        sessions=Sessions(RealtimeConfig(), _np_upscale),
        access=Access(cors_origins=allowed),
    )
    evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    with TestClient(app) as client:
        for path in ("/v1/videos", "/metrics"):
            assert "access-control-allow-origin" not in client.get(path, headers=evil).headers
            preflight = client.options(path, headers=evil).headers
            assert "access-control-allow-origin" not in preflight
        # Reactor's browser SDK runs on the app's origin and calls the model server
        realtime = client.options("/start_session", headers=evil)
        assert realtime.headers["access-control-allow-origin"] == "*"
        if allowed:
            ok = {"Origin": allowed[0], "Access-Control-Request-Method": "DELETE"}
            granted = client.options("/v1/videos/video_x", headers=ok).headers
            assert granted["access-control-allow-origin"] == allowed[0]
            got = client.get("/v1/videos", headers={"Origin": allowed[0]}).headers
            assert got["access-control-allow-origin"] == allowed[0]


@pytest.mark.parametrize("allowed", [(), ("https://app.example",)])
def test_cross_site_form_posts_are_refused_unless_the_origin_is_allowed(
    tmp_path: Path, allowed: tuple[str, ...]
) -> None:
    """Issue 24 (6): a page on another site posts forms (no preflight) to a keyless server:
    create, extension and remix are 403 and make nothing; the server's own pages, an allowed
    origin and clients that are not browsers go through."""
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    sessions = Sessions(RealtimeConfig(), _np_upscale)
    access = Access(cors_origins=allowed)
    app = build_app(engine, jobs=JobApi(parts, ApiConfig()), sessions=sessions, access=access)
    foreign = (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://testserver.evil.example", "Sec-Fetch-Site": "same-site"},
    )
    with TestClient(app) as client:
        source = create(client)
        assert wait(client, source["id"])["status"] == "completed"
        attacks = (
            ("/v1/videos", FORM),
            ("/v1/videos/extensions", {**FORM, "video": str(source["id"])}),
            (f"/v1/videos/{source['id']}/remix", {"prompt": "a wolf"}),
        )
        for path, form in attacks:
            for headers in foreign:
                refused = client.post(path, data=form, files={"x": ("x", b"")}, headers=headers)
                assert refused.status_code == 403, (path, headers, refused.text)
                assert refused.json()["error"]["code"] == "cross_site_request"
        assert client.delete(f"/v1/videos/{source['id']}", headers=foreign[0]).status_code == 403
        assert len(client.get("/v1/videos").json()["data"]) == 1  # nothing made or removed
        own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
        assert client.post("/v1/videos", data=FORM, headers=own).status_code == 200
        assert client.post("/v1/videos", data=FORM).status_code == 200  # not a browser
        if allowed:
            ok = {"Origin": allowed[0], "Sec-Fetch-Site": "cross-site"}
            assert client.post("/v1/videos", data=FORM, headers=ok).status_code == 200
        # Reactor's signalling stays open to pages of any origin (its SDK needs that)
        assert client.post("/tokens", headers=foreign[0]).status_code == 200


# -- 6. a full disk: the runner survives, /ready says so, the API answers 507 ---------------


class FullDiskStore(JobStore):
    """The real store, whose writes fail as SQLite's do on a full disk while `full` is set."""

    full = threading.Event()
    WRITES = (
        "admit",
        "claim_next",
        "update_progress",
        "record_chunk",
        "complete",
        "fail",
        "requeue",
        "heartbeat",
    )

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name not in FullDiskStore.WRITES:
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            if FullDiskStore.full.is_set():  # checked per call: the runner keeps the method
                raise sqlite3.OperationalError("database or disk is full")
            return attr(*args, **kwargs)

        return write


@pytest.fixture
def full_disk_client(tmp_path: Path) -> Iterator[TestClient]:
    FullDiskStore.full.clear()
    store = prepare_store(tmp_path)
    store.close()
    store = FullDiskStore(tmp_path / "jobs.db")
    engine = FakeEngine(FakeEngineConfig(step_delay_s=0.05))
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05, store=store)
    with TestClient(build_app(engine, jobs=JobApi(parts, ApiConfig()))) as client:
        yield client
    FullDiskStore.full.clear()


def _until(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_full_disk_mid_job_fails_that_job_and_the_runner_lives_on(
    full_disk_client: TestClient,
) -> None:
    client = full_disk_client
    first = create(client)
    _until(lambda: client.get(f"/v1/videos/{first['id']}").json()["status"] == "in_progress")
    FullDiskStore.full.set()  # progress writes fail now, then so does marking the job failed
    _until(lambda: client.get("/ready").status_code == 503)
    assert client.get("/health").status_code == 200
    refused = client.post("/v1/videos", data=FORM)
    assert refused.status_code == 507
    assert refused.json()["error"]["code"] == "insufficient_storage"
    assert client.get("/v1/videos").status_code == 200  # reads still work
    FullDiskStore.full.clear()
    failed = wait(client, first["id"])
    assert (failed["status"], failed["error"]["code"]) == ("failed", "insufficient_storage")  # type: ignore[index]
    _until(lambda: client.get("/ready").status_code == 200)
    second = create(client)
    assert wait(client, second["id"])["status"] == "completed"


def test_full_disk_while_idle_makes_the_runner_wait_not_die(full_disk_client: TestClient) -> None:
    client = full_disk_client
    FullDiskStore.full.set()  # claiming the next job is a write: it fails
    _until(lambda: client.get("/ready").status_code == 503)
    FullDiskStore.full.clear()
    _until(lambda: client.get("/ready").status_code == 200)
    assert wait(client, create(client)["id"])["status"] == "completed"


class CountingStore(JobStore):
    """The real store; counts the progress writes that failed (as domain errors)."""

    progress_failures = 0

    def update_progress(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().update_progress(*args, **kwargs)
        except HeliosError:
            CountingStore.progress_failures += 1
            raise


def test_a_locked_database_during_progress_writes_is_skipped_and_jobs_go_on(
    tmp_path: Path,
) -> None:
    """Issue 24, finding 9: a SQLite lock held past the busy timeout under a progress write
    skips that write (a domain error, not a dead thread); the job completes and the next
    one starts at once."""
    prepare_store(tmp_path).close()
    store = CountingStore(tmp_path / "jobs.db", busy_timeout_s=0.05)
    engine = FakeEngine(FakeEngineConfig(step_delay_s=0.05))
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05, store=store)
    with TestClient(build_app(engine, jobs=JobApi(parts, ApiConfig()))) as client:
        first = create(client)
        _until(lambda: client.get(f"/v1/videos/{first['id']}").json()["status"] == "in_progress")
        locker = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        _until(lambda: CountingStore.progress_failures >= 2)
        locker.execute("ROLLBACK")
        locker.close()
        assert wait(client, first["id"])["status"] == "completed"
        second = create(client)
        assert wait(client, second["id"])["status"] == "completed"
    try:
        with pytest.raises(InsufficientStorageError), store._write():
            raise sqlite3.OperationalError("database or disk is full")
        with pytest.raises(StoreUnavailableError), store._read():
            raise sqlite3.OperationalError("disk I/O error")
    finally:
        store.close()


# -- 11. JSON too deep or too wide is a 400 --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (json.dumps({f"k{i}": 0 for i in range(20_000)}), "object keys"),
        (json.dumps({"prompt": "x", "extra_params": "[" * 50_000}), "extra_params"),
    ],
)
def test_json_bodies_too_deep_or_wide_are_400(tmp_path: Path, body: str, detail: str) -> None:
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    with TestClient(build_app(engine, jobs=JobApi(parts, ApiConfig()))) as client:
        response = client.post(
            "/v1/videos", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert detail in response.json()["error"]["message"]


# -- 12. one damaged row never takes down a listing or the start ------------------------------


def test_damaged_rows_are_quarantined_and_the_rest_served(tmp_path: Path) -> None:
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    with TestClient(build_app(engine, jobs=JobApi(parts, ApiConfig()))) as client:
        ids = [str(create(client, f"video {i}")["id"]) for i in range(3)]
        for video_id in ids:
            assert wait(client, video_id)["status"] == "completed"
        with sqlite3.connect(tmp_path / "jobs.db") as db:  # damaged while the server runs
            db.execute("UPDATE jobs SET spec = '{not json' WHERE id = ?", (ids[0],))
        listing = client.get("/v1/videos")
        assert listing.status_code == 200
        by_id = {v["id"]: v for v in listing.json()["data"]}
        assert by_id[ids[0]]["error"]["code"] == "corrupt_record"
        assert by_id[ids[1]]["status"] == "completed"
    parts.store.close()
    with sqlite3.connect(tmp_path / "jobs.db") as db:  # and one that was running
        db.execute("UPDATE jobs SET spec = '[]', status = 'in_progress' WHERE id = ?", (ids[1],))
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)  # the start must not fail
    with TestClient(build_app(engine, jobs=JobApi(parts, ApiConfig()))) as client:
        videos = {v["id"]: v for v in client.get("/v1/videos").json()["data"]}
        assert videos[ids[1]]["status"] == "failed"
        assert videos[ids[1]]["error"]["code"] == "corrupt_record"
        assert videos[ids[2]]["status"] == "completed"
        assert client.get(f"/v1/videos/{ids[2]}/content").status_code == 200
        assert wait(client, create(client)["id"])["status"] == "completed"
    parts.store.close()
