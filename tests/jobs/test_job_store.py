"""JobStore: round trips, lifecycle, pagination, progress and persistence on disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import pytest

from helios_serve.errors import InvalidInputError
from helios_serve.jobs.models import (
    GenerationSpec,
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobStatus,
    new_job_id,
)
from helios_serve.jobs.records import JobStoreError
from helios_serve.jobs.sqlite.schema import SCHEMA_VERSION
from helios_serve.jobs.sqlite.store import JobStore

AddJob = Callable[..., Job]


class FakeClock(Protocol):
    """The `clock` fixture: a settable time source."""

    now: float

    def __call__(self) -> float: ...


def test_create_get_round_trip(store: JobStore, make_spec: Callable[..., GenerationSpec]) -> None:
    spec = make_spec(reference_file="reference.mp4", reference_kind="video", seed=2**40)
    job = Job.new("helios-mid", spec, created_at=1_700_000_000, remixed_from_video_id=new_job_id())
    assert store.create(job) == job
    got = store.get(job.id)
    assert got == job
    assert got.spec.settings.pyramid_steps == (20, 20, 20)


def test_unicode_and_lone_surrogates_survive(store: JobStore, add_job: AddJob) -> None:
    job = add_job(prompt="雪の中の狐 🦊 \ud800 end")
    assert store.get(job.id).spec.prompt == job.spec.prompt
    store.claim_next()
    failed = store.fail(job.id, "internal", "boom \udcff")
    assert store.get(job.id).error_message == failed.error_message == "boom ?"


def test_get_unknown_or_malformed_id_raises(store: JobStore) -> None:
    for bad in (new_job_id(), "../../etc/passwd", "video_x"):
        with pytest.raises(JobNotFoundError) as info:
            store.get(bad)
        assert info.value.code == "video_not_found"


def test_create_refuses_duplicates_and_non_queued_jobs(store: JobStore, add_job: AddJob) -> None:
    job = add_job()
    with pytest.raises(JobStoreError):
        store.create(job)
    with pytest.raises(InvalidTransitionError):
        store.create(replace(job, id=new_job_id(), status=JobStatus.COMPLETED))


def test_claim_is_fifo_and_counts_attempts(
    store: JobStore, add_job: AddJob, clock: FakeClock
) -> None:
    jobs = [add_job(seed=i) for i in range(5)]
    clock.now += 7.5
    claimed = [store.claim_next() for _ in range(5)]
    assert [c.id for c in claimed if c] == [j.id for j in jobs]
    first = claimed[0]
    assert first is not None
    assert first.status is JobStatus.IN_PROGRESS
    assert (first.attempts, first.started_at, first.heartbeat_at) == (1, int(clock.now), clock.now)
    assert store.claim_next() is None


def test_requeued_job_keeps_its_place(store: JobStore, add_job: AddJob) -> None:
    first, second = add_job(), add_job()
    assert store.claim_next() == store.get(first.id)
    back = store.requeue(first.id)
    assert (back.status, back.attempts, back.started_at, back.heartbeat_at) == (
        JobStatus.QUEUED,
        1,
        None,
        None,
    )
    again = store.claim_next()
    assert again is not None
    assert (again.id, again.attempts) == (first.id, 2)
    assert store.get(second.id).status is JobStatus.QUEUED


def test_complete_and_fail(store: JobStore, add_job: AddJob, clock: FakeClock) -> None:
    a, b, c = add_job(), add_job(), add_job()
    store.claim_next()
    clock.now += 30
    done = store.complete(a.id, "video.mp4", 12.5, 97, expires_at=2_000_000_000)
    assert (done.status, done.progress, done.file_name) == (JobStatus.COMPLETED, 100, "video.mp4")
    assert (done.inference_time_s, done.num_frames_delivered, done.frames_done) == (12.5, 97, 97)
    assert (done.completed_at, done.expires_at) == (int(clock.now), 2_000_000_000)
    store.claim_next()
    failed = store.fail(b.id, "out_of_memory", "CUDA out of memory")
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "out_of_memory")
    cancelled = store.fail(c.id, "cancelled", "shutting down")  # queued -> failed is legal
    assert cancelled.status is JobStatus.FAILED
    assert store.get(a.id) == done
    assert store.get(b.id) == failed


def test_illegal_transitions_raise_and_change_nothing(store: JobStore, add_job: AddJob) -> None:
    job = add_job()
    with pytest.raises(InvalidTransitionError):
        store.complete(job.id, "video.mp4", 1.0, 33)
    with pytest.raises(InvalidTransitionError):
        store.requeue(job.id)
    with pytest.raises(InvalidTransitionError):
        store.update_progress(job.id, 10, 0)
    with pytest.raises(InvalidTransitionError):
        store.heartbeat(job.id)
    store.claim_next()
    store.complete(job.id, "video.mp4", 1.0, 33)
    actions: list[Callable[[], Job]] = [
        lambda: store.fail(job.id, "internal", "late"),
        lambda: store.requeue(job.id),
        lambda: store.complete(job.id, "video.mp4", 1.0, 33),
    ]
    for action in actions:
        with pytest.raises(InvalidTransitionError):
            action()
    assert store.get(job.id).status is JobStatus.COMPLETED


def test_progress_is_monotonic_and_refreshes_heartbeat(
    store: JobStore, add_job: AddJob, clock: FakeClock
) -> None:
    job = add_job()
    store.claim_next()
    clock.now += 5
    assert store.update_progress(job.id, 40, 33).progress == 40
    lower = store.update_progress(job.id, 20, 10)
    assert (lower.progress, lower.frames_done, lower.heartbeat_at) == (40, 33, clock.now)
    assert store.update_progress(job.id, 250, 66).progress == 100
    assert store.get(job.id).frames_done == 66
    clock.now += 5
    store.heartbeat(job.id)
    assert store.get(job.id).heartbeat_at == clock.now


def test_delete(store: JobStore, add_job: AddJob) -> None:
    job = add_job()
    store.claim_next()
    old = store.delete(job.id)
    assert old.status is JobStatus.IN_PROGRESS
    with pytest.raises(JobNotFoundError):
        store.get(job.id)
    with pytest.raises(JobNotFoundError):
        store.delete(job.id)
    with pytest.raises(JobNotFoundError):  # the worker finds out at its next write
        store.update_progress(job.id, 50, 0)


def _walk(store: JobStore, order: str, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        jobs, has_more = store.list(after=after, limit=limit, order=order)  # type: ignore[arg-type]
        pages.append([j.id for j in jobs])
        if not has_more:
            return pages
        after = jobs[-1].id


def test_cursor_pagination(store: JobStore, add_job: AddJob, clock: FakeClock) -> None:
    ids = []
    for i in range(7):
        if i % 3 == 0:
            clock.now += 1  # several jobs share a created_at second; insertion breaks ties
        ids.append(add_job(seed=i).id)
    asc = _walk(store, "asc", 3)
    assert [len(p) for p in asc] == [3, 3, 1]
    assert [i for page in asc for i in page] == ids
    desc = _walk(store, "desc", 3)
    assert [i for page in desc for i in page] == ids[::-1]
    assert _walk(store, "asc", 7) == [ids]
    page, has_more = store.list(after=ids[5], limit=5, order="asc")
    assert ([j.id for j in page], has_more) == ([ids[6]], False)
    page, has_more = store.list(after=ids[0], limit=20, order="desc")
    assert (page, has_more) == ([], False)
    default, more = store.list()
    assert ([j.id for j in default], more) == (ids[::-1], False)


def test_pagination_after_unknown_or_deleted_ids(store: JobStore, add_job: AddJob) -> None:
    ids = [add_job().id for _ in range(5)]
    # unknown (or path-shaped) cursors: an empty page, not an error
    assert store.list(after=new_job_id()) == ([], False)
    assert store.list(after="../x") == ([], False)
    # a deleted cursor keeps its place: deleting while paging skips nothing
    store.delete(ids[2])
    page, more = store.list(after=ids[2], limit=10, order="asc")
    assert ([j.id for j in page], more) == (ids[3:], False)
    page, more = store.list(after=ids[2], limit=1, order="desc")
    assert ([j.id for j in page], more) == ([ids[1]], True)
    assert store.list(limit=0) == ([], True)
    with pytest.raises(InvalidInputError):
        store.list(limit=-1)
    with pytest.raises(InvalidInputError):
        store.list(order="up")  # type: ignore[arg-type]


def test_counts(store: JobStore, add_job: AddJob) -> None:
    jobs = [add_job() for _ in range(4)]
    store.claim_next()
    store.complete(jobs[0].id, "video.mp4", 1.0, 33)
    store.claim_next()
    assert store.queue_depth() == 2
    assert store.count_by_status() == {
        JobStatus.QUEUED: 2,
        JobStatus.IN_PROGRESS: 1,
        JobStatus.COMPLETED: 1,
        JobStatus.FAILED: 0,
    }


def test_everything_survives_reopening(db_path: Path, add_job: AddJob, store: JobStore) -> None:
    jobs = [add_job(seed=i) for i in range(6)]
    store.claim_next()
    store.complete(jobs[0].id, "video.mp4", 3.25, 97)
    store.claim_next()
    store.fail(jobs[1].id, "out_of_memory", "too big")
    store.claim_next()
    store.update_progress(jobs[2].id, 37, 33)
    store.delete(jobs[5].id)
    before = store.list(limit=100)
    store.close()
    store.close()  # idempotent
    with JobStore(db_path) as again:
        assert again.list(limit=100) == before
        assert [again.get(j.id) for j in jobs[:5]] == before[0][::-1]
        assert again.integrity_check() == "ok"


def test_pragmas_and_schema_version(store: JobStore, db_path: Path) -> None:
    assert store.journal_mode == "wal"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,
        )
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.get(new_job_id())


def test_newer_schema_is_refused(db_path: Path) -> None:
    JobStore(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(JobStoreError, match="schema version"):
        JobStore(db_path)


def test_migration_is_idempotent(db_path: Path, add_job: AddJob, store: JobStore) -> None:
    job = add_job()
    for _ in range(3):
        JobStore(db_path).close()
    assert store.get(job.id) == job
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()
