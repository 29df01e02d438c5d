"""Crash recovery: jobs a lost worker held are re-run or failed, and `kill -9` loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from helios_serve.jobs.models import WORKER_LOST, Job, JobStatus, is_valid_job_id
from helios_serve.jobs.sqlite.store import JobStore

AddJob = Callable[..., Job]


class FakeClock(Protocol):
    now: float

    def __call__(self) -> float: ...


def test_crash_mid_job_requeues_then_fails_after_max_attempts(
    db_path: Path, store: JobStore, add_job: AddJob
) -> None:
    job, other = add_job(), add_job()
    store.claim_next()
    store.update_progress(job.id, 30, 33)
    # kill -9 of the server: `store` is never closed; a fresh process opens the same file.
    second = JobStore(db_path)
    report = second.recover_after_restart(max_attempts=2)
    assert (report.requeued_ids, report.failed_ids) == ((job.id,), ())
    back = second.get(job.id)
    # progress and frames stay: the next attempt continues after the chunks already saved
    assert (back.status, back.attempts, back.progress, back.frames_done) == (
        JobStatus.QUEUED,
        1,
        30,
        33,
    )
    assert back.heartbeat_at is None
    assert second.get(other.id).status is JobStatus.QUEUED
    rerun = second.claim_next()
    assert rerun is not None
    assert (rerun.id, rerun.attempts) == (job.id, 2)
    # ...and the server dies again while running it: attempts are used up.
    third = JobStore(db_path)
    report = third.recover_after_restart(max_attempts=2)
    assert (report.requeued, report.failed) == (0, 1)
    lost = third.get(job.id)
    assert (lost.status, lost.error_code) == (JobStatus.FAILED, WORKER_LOST)
    assert "attempt 2 of 2" in (lost.error_message or "")
    assert lost.completed_at is not None
    nxt = third.claim_next()
    assert nxt is not None
    assert (nxt.id, nxt.attempts) == (other.id, 1)
    for s in (second, third):
        s.close()


def test_recovery_leaves_other_statuses_alone(store: JobStore, add_job: AddJob) -> None:
    done, failed, queued = add_job(), add_job(), add_job()
    store.claim_next()
    store.complete(done.id, "video.mp4", 1.0, 33)
    store.claim_next()
    store.fail(failed.id, "internal", "x")
    before = [store.get(j.id) for j in (done, failed, queued)]
    report = store.recover_after_restart()
    assert (report.requeued, report.failed) == (0, 0)
    assert [store.get(j.id) for j in (done, failed, queued)] == before


def test_max_attempts_one_fails_at_once(store: JobStore, add_job: AddJob) -> None:
    job = add_job()
    store.claim_next()
    assert store.recover_after_restart(max_attempts=1).failed_ids == (job.id,)
    with pytest.raises(ValueError, match="max_attempts"):
        store.recover_after_restart(max_attempts=0)


def test_recover_stale_only_touches_silent_workers(
    store: JobStore, add_job: AddJob, clock: FakeClock
) -> None:
    job = add_job()
    store.claim_next()
    clock.now += 8
    assert store.recover_stale(lease_s=10).requeued == 0
    store.update_progress(job.id, 10, 0)
    clock.now += 9.5
    assert store.recover_stale(lease_s=10).requeued == 0
    clock.now += 1
    assert store.recover_stale(lease_s=10).requeued_ids == (job.id,)
    assert store.get(job.id).status is JobStatus.QUEUED


_CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from pathlib import Path
    from helios_serve.core.settings import SamplingSettings
    from helios_serve.jobs.models import GenerationSpec, Job
    from helios_serve.jobs.sqlite.store import JobStore

    store = JobStore(Path(sys.argv[1]))
    spec = GenerationSpec("a fox", "", 640, 384, 99, 24, 0, SamplingSettings())

    def create_one():
        job = store.create(Job.new("helios", spec))
        print(job.id, flush=True)  # printed only once create() has returned

    def create_forever():
        while True:
            create_one()

    for _ in range(50):
        create_one()
    threading.Thread(target=create_forever, daemon=True).start()
    time.sleep(float(sys.argv[2]))  # let it get midway through more creates
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("delay_s", [0.0, 0.03, 0.1])
def test_kill_9_loses_no_acknowledged_job(tmp_path: Path, delay_s: float) -> None:
    db = tmp_path / "jobs.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), str(delay_s)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The last line may be cut mid-write by the kill; only whole ids count as acknowledged.
    printed = [line for line in proc.stdout.splitlines() if is_valid_job_id(line)]
    assert len(printed) >= 50
    assert len(set(printed)) == len(printed)
    with JobStore(db) as store:
        assert store.integrity_check() == "ok"
        assert all(store.get(job_id).status is JobStatus.QUEUED for job_id in printed)
        total = store.count_by_status()[JobStatus.QUEUED]
        # At most one create can have committed without its id being printed.
        assert len(printed) <= total <= len(printed) + 1
