"""`helios bench-dispatch`: what getting a job to an engine costs, in-process vs the cluster.

100 jobs (by default) on fake engines that sleep per denoising step (so two CPU cores do not
bound it: the work is waiting, as a GPU worker's is), run three ways: the in-process runner of
`helios serve` on SQLite, and cluster workers (PostgreSQL records, procrastinate's queue, the
blob store mirror) 1 and 4 at a time. Everything runs in this process, so every timestamp is
on one clock: admitted → claimed (queue wait), claimed → first step (the dispatch overhead
itself: the claim's transaction, fetching inputs, opening the stream), last step → completed
(saving and assembling), and throughput. Needs `--database` and `--storage` of a cluster
(`scripts/local_cluster.py --workers 0 --gateways 0 --run ...` provides both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helios_serve.cluster.maintenance import Upkeep
from helios_serve.cluster.worker import WorkerOptions, serve_worker
from helios_serve.core.protocols import CancelCheck, FramesCallback, Priority, ProgressCallback
from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import ChunkResult, StepProgress
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig, FakeStream
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.models import GenerationSpec, Job, JobStatus
from helios_serve.jobs.postgres.queue import build_queue_app, defer_video
from helios_serve.jobs.postgres.store import PostgresJobStore
from helios_serve.jobs.records import JobRecords
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.sqlite.store import JobStore


@dataclass
class Timeline:
    """Monotonic timestamps per job (prompts name jobs: the engine sees no ids)."""

    admitted: dict[str, float] = field(default_factory=dict)
    claimed: dict[str, float] = field(default_factory=dict)
    first_step: dict[str, float] = field(default_factory=dict)
    """When the engine began the job's first step."""
    last_step: dict[str, float] = field(default_factory=dict)
    """When the job's last step ended."""
    completed: dict[str, float] = field(default_factory=dict)
    prompt_of: dict[str, str] = field(default_factory=dict)


class TimedStream(FakeStream):
    def __init__(self, timeline: Timeline, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeline = timeline
        self._name = self._request.prompt

    async def next_chunk(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        *,
        prefetch: bool = False,
        checkpoint: bool = False,
        on_frames: FramesCallback | None = None,
    ) -> ChunkResult:
        # the first step starts now (the fake's steps report after their sleep)
        self._timeline.first_step.setdefault(self._name, time.monotonic())

        def step(progress: StepProgress) -> None:
            self._timeline.last_step[self._name] = time.monotonic()
            if on_progress is not None:
                on_progress(progress)

        return await super().next_chunk(
            step, should_cancel, prefetch=prefetch, checkpoint=checkpoint, on_frames=on_frames
        )


class TimedEngine(FakeEngine):
    def __init__(self, timeline: Timeline, config: FakeEngineConfig) -> None:
        super().__init__(config)
        self._timeline = timeline

    async def open_stream(
        self, request: StreamRequest, priority: Priority, resume: bytes | None = None
    ) -> FakeStream:
        del priority  # one fake engine per worker: nothing to order
        return TimedStream(self._timeline, request, self.config, self._lock, resume)


class TimedEvents:
    """When the stores hand out and complete jobs: the `RecordEvents` seam of the job store."""

    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline

    def claimed(self, job: Job) -> None:
        self._timeline.claimed.setdefault(job.id, time.monotonic())

    def completed(self, job: Job) -> None:
        self._timeline.completed[job.id] = time.monotonic()


@dataclass(frozen=True)
class Workload:
    jobs: int = 100
    chunks: int = 2
    steps: int = 3
    step_delay_s: float = 0.05

    def spec(self, i: int) -> GenerationSpec:
        settings = SamplingSettings(pyramid_steps=(1, 1, 1))
        return GenerationSpec(f"bench job {i}", "", 64, 64, 33 * self.chunks, 24, i, settings)

    def engine(self, timeline: Timeline) -> TimedEngine:
        config = FakeEngineConfig(steps_per_chunk=self.steps, step_delay_s=self.step_delay_s)
        return TimedEngine(timeline, config)

    @property
    def engine_s_per_job(self) -> float:
        return self.chunks * self.steps * self.step_delay_s


async def _wait_all(store: JobRecords, ids: list[str]) -> None:
    async with asyncio.timeout(1800):
        while True:
            counts = await asyncio.to_thread(store.count_by_status)
            if counts[JobStatus.COMPLETED] + counts[JobStatus.FAILED] >= len(ids):
                return
            await asyncio.sleep(0.05)


async def run_in_process(workload: Workload, root: Path) -> Timeline:
    """`helios serve`'s dispatcher: one runner claiming from SQLite."""
    timeline = Timeline()
    store = JobStore(root / "jobs.db", events=TimedEvents(timeline))
    runner = JobRunner(store, JobFiles(root / "videos"), workload.engine(timeline), None, 0.5)
    runner.start()
    ids = []
    for i in range(workload.jobs):
        job, _ = store.admit(Job.new("fake", workload.spec(i)))
        timeline.admitted[job.id] = time.monotonic()
        timeline.prompt_of[job.id] = job.spec.prompt
        ids.append(job.id)
        runner.wake()
    await _wait_all(store, ids)
    await runner.stop()
    store.close()
    return timeline


async def run_cluster(
    workload: Workload, workers: int, database: str, storage: str, root: Path
) -> Timeline:
    """`workers` cluster workers (each its own engine, store pool and queue worker)."""
    timeline = Timeline()
    admin = PostgresJobStore(database)
    with admin.pool.connection() as conn:  # every run starts from an empty queue
        conn.execute("TRUNCATE helios_jobs, helios_idempotency, procrastinate_jobs CASCADE")
    stop = asyncio.Event()
    upkeep = Upkeep(worker_timeout_s=30, max_attempts=3, interval_s=2)
    tasks = []
    for w in range(workers):
        store = PostgresJobStore(database, events=TimedEvents(timeline))
        options = WorkerOptions(f"bench-{w}", database, storage, root / f"w{w}", upkeep, 1.0)
        engine = workload.engine(timeline)
        tasks.append(asyncio.create_task(serve_worker(engine, options, store=store, stop=stop)))
    await asyncio.sleep(1.0)  # the workers are listening
    queue = build_queue_app(database)
    ids = []
    async with queue.open_async():
        for i in range(workload.jobs):  # what a gateway does: admit, then defer
            job, _ = await asyncio.to_thread(admin.admit, Job.new("fake", workload.spec(i)))
            await defer_video(queue, job.id)
            timeline.admitted[job.id] = time.monotonic()
            timeline.prompt_of[job.id] = job.spec.prompt
            ids.append(job.id)
        await _wait_all(admin, ids)
    stop.set()
    await asyncio.gather(*tasks)
    admin.close()
    return timeline


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {
        "p50": round(1000 * statistics.median(ordered), 2),
        "p95": round(1000 * p95, 2),
        "max": round(1000 * ordered[-1], 2),
    }


def summarize(timeline: Timeline, workload: Workload, workers: int) -> dict[str, Any]:
    ids = list(timeline.admitted)
    prompt = timeline.prompt_of
    wall = max(timeline.completed.values()) - min(timeline.admitted.values())
    return {
        "workers": workers,
        "jobs": len(ids),
        "completed": len(timeline.completed),
        "wall_s": round(wall, 3),
        "jobs_per_s": round(len(timeline.completed) / wall, 3),
        "engine_s_per_job": workload.engine_s_per_job,
        "ideal_jobs_per_s": round(workers / workload.engine_s_per_job, 3),
        "claim_to_first_step_ms": _ms(
            [timeline.first_step[prompt[j]] - timeline.claimed[j] for j in ids]
        ),
        "admitted_to_claimed_ms": _ms([timeline.claimed[j] - timeline.admitted[j] for j in ids]),
        "last_step_to_completed_ms": _ms(
            [timeline.completed[j] - timeline.last_step[prompt[j]] for j in ids]
        ),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workload = Workload(args.jobs, args.chunks, args.steps, args.step_delay)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="helios-bench-dispatch-") as tmp:
        root = Path(tmp)
        results["in_process"] = summarize(
            await run_in_process(workload, root / "in-process"), workload, 1
        )
        print(_line("in-process", results["in_process"]), flush=True)
        for n in args.workers:
            timeline = await run_cluster(workload, n, args.database, args.storage, root / f"c{n}")
            results[f"cluster_{n}"] = summarize(timeline, workload, n)
            print(_line(f"cluster x{n}", results[f"cluster_{n}"]), flush=True)
    first, last = args.workers[0], args.workers[-1]
    ratio = results[f"cluster_{last}"]["jobs_per_s"] / results[f"cluster_{first}"]["jobs_per_s"]
    return {
        "command": "helios " + shlex.join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "workload": workload.__dict__ | {"engine": "fake, sleeps per step"},
        "results": results,
        f"throughput_ratio_{last}_vs_{first}_workers": round(ratio, 3),
    }


def _line(name: str, r: dict[str, Any]) -> str:
    c2s = r["claim_to_first_step_ms"]
    return (
        f"{name:<12} {r['completed']}/{r['jobs']} jobs in {r['wall_s']:7.2f} s = "
        f"{r['jobs_per_s']:6.2f} jobs/s (ideal {r['ideal_jobs_per_s']:.2f}); claim -> first "
        f"step p50 {c2s['p50']:.1f} ms p95 {c2s['p95']:.1f} ms; last step -> completed p50 "
        f"{r['last_step_to_completed_ms']['p50']:.1f} ms"
    )


def main(args: argparse.Namespace) -> int:
    if not args.database or not args.storage:
        print("bench-dispatch needs --database and --storage (or HELIOS_DATABASE/_STORAGE)")
        return 2
    report = asyncio.run(run(args))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out.with_suffix('.json')}")
    return 0
