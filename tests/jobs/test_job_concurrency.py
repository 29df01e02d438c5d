"""JobStore under threads: one store shared by many threads, and two stores on one file."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helios_serve.jobs.models import GenerationSpec, Job, JobStatus
from helios_serve.jobs.sqlite.store import JobStore


def test_four_threads_create_and_run_fifty_jobs_each(
    store: JobStore, make_spec: Callable[..., GenerationSpec]
) -> None:
    start = threading.Barrier(4)

    def work(worker: int) -> list[str]:
        start.wait()
        created = []
        for i in range(50):
            created.append(store.create(Job.new("helios", make_spec(seed=worker * 100 + i))).id)
            job = store.claim_next()  # any thread's job: claims race on purpose
            assert job is not None
            store.update_progress(job.id, 50, 33)
            store.list(limit=5)
            store.complete(job.id, "video.mp4", 0.5, 33)
        return created

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    ids = [i for r in results for i in r]
    assert len(set(ids)) == 200
    assert store.count_by_status()[JobStatus.COMPLETED] == 200
    assert all(store.get(i).attempts == 1 for i in ids)
    assert store.integrity_check() == "ok"


def test_two_stores_on_one_file_never_claim_a_job_twice(
    db_path: Path, make_spec: Callable[..., GenerationSpec]
) -> None:
    stores = [JobStore(db_path), JobStore(db_path)]
    ids = {stores[0].create(Job.new("helios", make_spec(seed=i))).id for i in range(100)}

    def drain(store: JobStore) -> list[str]:
        claimed = []
        while (job := store.claim_next()) is not None:
            claimed.append(job.id)
        return claimed

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(drain, stores * 2))
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == sorted(ids)
    for s in stores:
        s.close()
