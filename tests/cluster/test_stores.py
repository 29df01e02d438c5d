"""The storage seams, both implementations of each against the same expectations: job records
on SQLite and on a real PostgreSQL, blobs in a folder and in a real S3 (SeaweedFS)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from helios_serve.core.settings import SamplingSettings
from helios_serve.jobs import digests
from helios_serve.jobs.blobs import BlobStore, LocalBlobStore
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.mirror import JobMirror
from helios_serve.jobs.models import (
    WORKER_LOST,
    GenerationSpec,
    Job,
    JobStatus,
    StaleAttemptError,
)
from helios_serve.jobs.postgres.schema import SCHEMA_VERSION
from helios_serve.jobs.postgres.store import PostgresJobStore
from helios_serve.jobs.records import (
    IdempotencyClaim,
    JobRecords,
    QueueFullError,
    StoreUnavailableError,
)
from helios_serve.jobs.s3 import S3BlobStore
from helios_serve.jobs.sqlite.store import JobStore

from .conftest import BUCKET, LocalCluster

_databases = itertools.count(1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def spec() -> GenerationSpec:
    return GenerationSpec("a fox", "", 128, 64, 33, 24, 7, SamplingSettings())


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[Clock], JobRecords]]:
    """`make_store(clock)` → a store; several calls share one database (like two gateways)."""
    opened: list[JobRecords] = []
    if request.param == "sqlite":
        path = tmp_path / "jobs.db"

        def open_store(clock: Clock) -> JobRecords:
            opened.append(JobStore(path, clock=clock))
            return opened[-1]
    else:
        cluster: LocalCluster = request.getfixturevalue("local_cluster")
        dsn = cluster.postgres.create_database(f"helios_s{next(_databases)}")

        def open_store(clock: Clock) -> JobRecords:
            opened.append(PostgresJobStore(dsn, clock=clock))
            return opened[-1]

    yield open_store
    for store in opened:
        store.close()


def test_a_taken_over_job_refuses_the_old_attempts_writes(
    make_store: Callable[[Clock], JobRecords],
) -> None:
    store = make_store(Clock())
    job = store.create(Job.new("m", spec()))
    first = store.claim_next()
    assert first is not None
    assert first.attempts == 1
    store.record_chunk(job.id, 1, 30, 33, attempt=1)
    second = store.take(job.id, max_attempts=3)  # the queue says its worker was lost
    assert second is not None
    assert (second.status, second.attempts, second.chunks_done) == (JobStatus.IN_PROGRESS, 2, 1)
    for write in (
        lambda: store.update_progress(job.id, 50, 40, attempt=1),
        lambda: store.record_chunk(job.id, 2, 60, 66, attempt=1),
        lambda: store.heartbeat(job.id, attempt=1),
        lambda: store.complete(job.id, "video.mp4", 1.0, 97, attempt=1),
        lambda: store.fail(job.id, "x", "late", attempt=1),
    ):
        with pytest.raises(StaleAttemptError):
            write()
    assert store.get(job.id).status is JobStatus.IN_PROGRESS
    done = store.complete(job.id, "video.mp4", 1.0, 97, attempt=2)
    assert done.status is JobStatus.COMPLETED
    with pytest.raises(StaleAttemptError):  # once completed, still only one completion
        store.complete(job.id, "video.mp4", 1.0, 97, attempt=1)


def test_take_claims_resumes_fails_or_ignores(make_store: Callable[[Clock], JobRecords]) -> None:
    store = make_store(Clock())
    job = store.create(Job.new("m", spec()))
    taken = store.take(job.id, max_attempts=2)
    assert taken is not None
    assert taken.attempts == 1
    again = store.take(job.id, max_attempts=2)
    assert again is not None
    assert again.attempts == 2
    lost = store.take(job.id, max_attempts=2)  # out of attempts: failed, not run a third time
    assert lost is not None
    assert (lost.status, lost.error_code) == (JobStatus.FAILED, WORKER_LOST)
    assert store.take(job.id, max_attempts=2) is None  # finished: nothing to do
    store.delete(job.id)
    assert store.take(job.id, max_attempts=2) is None  # deleted: nothing to do


def test_a_second_queue_task_for_a_running_job_is_ignored(
    make_store: Callable[[Clock], JobRecords],
) -> None:
    """A job queued twice (the upkeep re-queued it while its first task was being taken) is
    not taken over while its attempt reports in; once silent past the lease, it is."""
    clock = Clock()
    store = make_store(clock)
    job = store.create(Job.new("m", spec()))
    first = store.take(job.id, max_attempts=3, lease_s=0.5)
    assert first is not None
    assert first.attempts == 1
    assert store.take(job.id, max_attempts=3, lease_s=0.5) is None
    clock.now += 30
    time.sleep(0.6)  # SQLite judges on its clock, PostgreSQL on the database's
    lost = store.take(job.id, max_attempts=3, lease_s=0.5)
    assert lost is not None
    assert lost.attempts == 2


def test_admission_is_one_decision_across_stores(make_store: Callable[[Clock], JobRecords]) -> None:
    stores = [make_store(Clock()), make_store(Clock())]  # two gateways on one database
    claim = IdempotencyClaim("retry-me", "fingerprint")
    made: list[tuple[str, bool]] = []
    full = 0
    lock = threading.Lock()

    def create(i: int) -> None:
        nonlocal full
        store = stores[i % 2]
        try:
            job, created = store.admit(Job.new("m", spec()), max_queue=5, claim=claim)
            with lock:
                made.append((job.id, created))
            store.admit(Job.new("m", spec()), max_queue=5)
        except QueueFullError:
            with lock:
                full += 1

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({job_id for job_id, _ in made}) == 1  # the same key made one job
    assert sum(created for _, created in made) == 1
    assert stores[0].queue_depth() == 5  # the limit held under concurrent creates
    assert full == 12 - 4


def test_recover_stale_requeues_only_silent_jobs(make_store: Callable[[Clock], JobRecords]) -> None:
    clock = Clock()
    store = make_store(clock)
    silent = store.create(Job.new("m", spec()))
    alive = store.create(Job.new("m", spec()))
    store.claim_next()
    store.claim_next()
    # SQLite's leases run on its clock, PostgreSQL's on the database's: time passes for both
    clock.now += 30
    time.sleep(0.6)
    store.heartbeat(alive.id, attempt=1)
    report = store.recover_stale(lease_s=0.5, max_attempts=3)
    assert report.requeued_ids == (silent.id,)
    assert store.get(silent.id).status is JobStatus.QUEUED
    assert store.get(alive.id).status is JobStatus.IN_PROGRESS


def test_postgres_away_is_unavailable_not_a_crash(local_cluster: LocalCluster) -> None:
    dsn = local_cluster.postgres.create_database(f"helios_s{next(_databases)}")
    store = PostgresJobStore(dsn)
    try:
        store.create(Job.new("m", spec()))
        store.pool.close()  # as if every connection to the server broke
        store.pool = type(store.pool)(  # a pool pointed at a port nobody listens on
            dsn.replace(str(local_cluster.postgres.port), "1"), open=True, timeout=1
        )
        with pytest.raises(StoreUnavailableError):
            store.queue_depth()
    finally:
        store.close()


def test_helios_db_upgrade_migrates_once_and_refuses_a_newer_schema(
    local_cluster: LocalCluster,
) -> None:
    dsn = local_cluster.postgres.create_database(f"helios_s{next(_databases)}")

    def upgrade() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "helios_serve.cli", "db", "upgrade", "--database", dsn]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    for _ in range(2):  # a fresh database, then one already up to date
        done = upgrade()
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"the database is at schema version {SCHEMA_VERSION}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        versions = conn.execute("SELECT version FROM helios_schema_version").fetchall()
        assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        assert {"helios_jobs", "helios_workers", "procrastinate_jobs"} <= tables
        conn.execute(
            "INSERT INTO helios_schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,)
        )
    refused = upgrade()  # a database a newer helios-serve migrated is never touched
    assert refused.returncode != 0
    assert f"schema version {SCHEMA_VERSION + 1}" in refused.stderr


@pytest.fixture(params=["folder", "s3"])
def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> BlobStore:
    if request.param == "folder":
        return LocalBlobStore(tmp_path / "blobs")
    cluster: LocalCluster = request.getfixturevalue("local_cluster")
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    return S3BlobStore(f"s3://{BUCKET}/blobs-{next(_databases)}")


def test_blob_store_round_trip(blobs: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00\x01" * 70_000)
    blobs.put_file("video_1/chunks/chunk-000000.mp4", source)
    blobs.put_file("video_1/video.mp4", source)
    blobs.put_file("video_10/video.mp4", source)
    assert blobs.list_keys("video_1/") == ["video_1/chunks/chunk-000000.mp4", "video_1/video.mp4"]
    out = tmp_path / "out" / "got.bin"
    assert blobs.get_file("video_1/video.mp4", out)
    assert out.read_bytes() == source.read_bytes()
    assert not blobs.get_file("video_1/missing.mp4", tmp_path / "none")
    assert not (tmp_path / "none").exists()
    assert blobs.copy("video_1/video.mp4", "video_2/base/video.mp4")
    assert not blobs.copy("video_1/missing.mp4", "video_2/base/x.mp4")
    assert blobs.delete_prefix("video_1/") == 2
    assert blobs.list_keys("video_") == ["video_10/video.mp4", "video_2/base/video.mp4"]
    with pytest.raises(ValueError, match="plain blob key"):
        blobs.put_file("../escape", source)


def test_mirror_brings_a_jobs_checkpoint_to_another_machine(
    blobs: BlobStore, tmp_path: Path
) -> None:
    here, there = JobFiles(tmp_path / "a"), JobFiles(tmp_path / "b")
    job_id = Job.new("m", spec()).id
    for index in (0, 1):
        here.chunks_dir(job_id).mkdir(parents=True, exist_ok=True)
        here.segment_path(job_id, index).write_bytes(b"segment %d" % index)
        digests.seal(here.segment_path(job_id, index), digests.segment_label(index))
        here.save_checkpoint(job_id, index, b"state %d" % index)
        JobMirror(here, blobs).push_chunk(job_id, index, trimmed=False, thumbnail=False)
    # two segments and the latest state, each with its digest (jobs/digests.py)
    assert JobMirror(there, blobs).pull_all(job_id) == 6
    assert there.resume_point(job_id, 0) == (1, b"state 1")
