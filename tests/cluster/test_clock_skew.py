"""Leases on one clock: a cluster where one worker's wall clock runs 90 s fast and another's
90 s slow (each store's clock is that worker's `time.time()`: the seam a host's skew comes
through) loses no job. Heartbeats are stamped and judged on PostgreSQL's `now()`, so the fast
worker's upkeep does not see the others' jobs as 90 s silent, and the gateway's does not see
the slow worker's as 90 s old."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from tests.live_server import app_server, free_port

from helios_serve.cluster.maintenance import Upkeep
from helios_serve.cluster.worker import WorkerOptions, serve_worker
from helios_serve.compose.gateway import GatewayOptions, build_gateway
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
from helios_serve.jobs.postgres.store import PostgresJobStore
from helios_serve.web.server import HttpOptions

from .conftest import LocalCluster

UPKEEP = Upkeep(worker_timeout_s=4, max_attempts=3, interval_s=0.5)
SKEWS = {"fast": 90.0, "slow": -90.0, "true": 0.0}
JOBS = 6


async def _submit_and_wait(url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        ids = []
        for n in range(JOBS):
            body = {"prompt": f"skew {n}", "num_frames": "66", "seed": str(n)}
            created = await http.post("/v1/videos", data=body)
            assert created.status_code == 200, created.text
            ids.append(created.json()["id"])
        deadline = time.monotonic() + 90
        for video_id in ids:
            while (await http.get(f"/v1/videos/{video_id}")).json()["status"] not in (
                "completed",
                "failed",
            ):
                assert time.monotonic() < deadline, f"{video_id} did not finish"
                await asyncio.sleep(0.2)
        metrics = (await http.get("/metrics")).text
        assert f"helios_workers_alive {len(SKEWS)}.0" in metrics  # none counted dead
    return ids


@pytest.mark.usefixtures("s3_env")
def test_workers_skewed_90_s_both_ways_lose_no_job(cluster: LocalCluster, tmp_path: Path) -> None:
    engine = FakeEngine(FakeEngineConfig(step_delay_s=0.25))  # ~1.5 s a job: leases matter

    async def main() -> list[tuple[str, str, int]]:
        stop = asyncio.Event()
        workers = []
        for name, offset in SKEWS.items():
            store = await asyncio.to_thread(
                PostgresJobStore, cluster.database, clock=lambda o=offset: time.time() + o
            )
            options = WorkerOptions(
                name, cluster.database, cluster.storage, tmp_path / name, UPKEEP, 0.5
            )
            workers.append(
                asyncio.create_task(serve_worker(engine, options, store=store, stop=stop))
            )
        store = await asyncio.to_thread(PostgresJobStore, cluster.database)
        try:
            options = GatewayOptions(
                cluster.database, cluster.storage, tmp_path / "gateway", upkeep=UPKEEP
            )
            app = build_gateway(options, store, engine.info)
            with app_server(app, HttpOptions(port=free_port())) as url:
                ids = await _submit_and_wait(url)
        finally:
            stop.set()
            await asyncio.gather(*workers)
            store.close()
        with psycopg.connect(cluster.database, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id, status, attempts FROM helios_jobs WHERE id = ANY(%s)", (ids,)
            ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    jobs = asyncio.run(main())
    assert len(jobs) == JOBS
    assert all(status == "completed" for _, status, _ in jobs), jobs
    assert all(attempts == 1 for _, _, attempts in jobs), jobs  # no lease judged lost
