"""A cluster in this process: `build_gateway` served by the production launcher and
`serve_worker` on a fake engine, on the module's own PostgreSQL database and S3 prefix. A job
goes from the gateway to the queue, the worker runs it and mirrors it to S3, and the gateway
answers its content: the cluster wing's modules (compose.gateway, cluster.worker, health,
maintenance, the relays, the PostgreSQL adapters) reached by a test, not only by processes. The
gateway also resists the attacks every shape resists, and serves the pages."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from tests.attacks import flood_is_refused, slow_heads_are_cut
from tests.live_server import app_server, free_port

from helios_serve.cluster.maintenance import Upkeep
from helios_serve.cluster.worker import WorkerOptions, serve_worker
from helios_serve.compose.gateway import GatewayOptions, build_gateway
from helios_serve.engine.fake import FakeEngine
from helios_serve.jobs.postgres.store import PostgresJobStore
from helios_serve.web.auth import Access
from helios_serve.web.server import HttpOptions

from .conftest import LocalCluster

KEY = "s3cret"
KEYED = {"Authorization": f"Bearer {KEY}"}
UPKEEP = Upkeep(worker_timeout_s=10, max_attempts=3, interval_s=1)


async def _round_trip(cluster: LocalCluster, url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=KEYED) as http:
        created = await http.post("/v1/videos", data={"prompt": "a fox", "num_frames": "66"})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        deadline = time.monotonic() + 120
        while (video := (await http.get(f"/v1/videos/{video_id}")).json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline, video
            await asyncio.sleep(0.2)
        assert video["status"] == "completed", video
        content = await http.get(f"/v1/videos/{video_id}/content")
        assert content.status_code == 200
        assert content.content[4:8] == b"ftyp"  # an MP4, fetched from S3 by the gateway
        # The worker is alive: its registry heartbeat is seen (polled: under a loaded CI machine
        # the gateway's once-a-second watch can lag a beat behind the job's completion).
        deadline = time.monotonic() + 20
        while (ready := await http.get("/ready")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            await asyncio.sleep(0.5)


@pytest.mark.usefixtures("s3_env")
def test_a_job_through_an_in_process_gateway_and_worker(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    options = WorkerOptions(
        "in-process", cluster.database, cluster.storage, tmp_path / "worker", UPKEEP, 0.5
    )
    engine = FakeEngine()

    async def main() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(serve_worker(engine, options, stop=stop))
        store = await asyncio.to_thread(PostgresJobStore, cluster.database)
        try:
            gateway = GatewayOptions(
                cluster.database,
                cluster.storage,
                tmp_path / "gateway",
                access=Access((KEY,)),
                upkeep=UPKEEP,
            )
            http = HttpOptions(port=free_port(), max_connections=8, head_timeout_s=1)
            app = build_gateway(gateway, store, engine.info)
            with app_server(app, http) as url:
                await _round_trip(cluster, url)
                await asyncio.to_thread(
                    slow_heads_are_cut, http.host, http.port, within_s=8, sockets=4
                )
                await asyncio.to_thread(flood_is_refused, http.host, http.port, 8)
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    for page in ("/", "/videos"):  # the pages of `helios serve`, no key needed
                        answer = await client.get(page)
                        assert answer.status_code == 200
                        assert answer.headers["content-type"].startswith("text/html")
                    assert (await client.get("/v1/videos")).status_code == 401
        finally:
            stop.set()
            await worker
            store.close()

    asyncio.run(main())
