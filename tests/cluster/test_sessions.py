"""Real-time sessions across workers: one gateway, two workers that serve sessions, real aiortc
clients (the js-sdk 2.9.0 flow) signalling through the gateway while the media comes straight
from each session's worker."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import av
import httpx
import psycopg
import pytest
from tests.reactor_client import ReactorClient
from websockets.asyncio.client import connect

from .conftest import (
    FAST_UPKEEP,
    WORKER_FLAGS,
    LocalCluster,
    Role,
    request,
    start_together,
    submit,
    wait_done,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def roles(cluster: LocalCluster) -> tuple[Role, list[Role]]:
    from local_cluster import free_port  # type: ignore[import-not-found]

    workers = [
        cluster.worker(
            f"rt-{n}", *WORKER_FLAGS, *FAST_UPKEEP, "--session-port", str(free_port()), start=False
        )
        for n in "ab"
    ]
    start_together(workers)
    return cluster.gateway("rt-gateway", *FAST_UPKEEP), workers


def host_of(cluster: LocalCluster, session_id: str) -> str:
    with psycopg.connect(cluster.database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT worker FROM helios_sessions WHERE session_id = %s", (session_id,)
        ).fetchone()
    assert row is not None, f"session {session_id} was never placed"
    return str(row[0])


def test_two_sessions_run_on_two_workers_a_third_waits_a_lost_worker_ends_only_its_own(
    cluster: LocalCluster, roles: tuple[Role, list[Role]]
) -> None:
    gateway, workers = roles

    async def main() -> None:
        first, second = ReactorClient(gateway.url), ReactorClient(gateway.url)
        try:
            for client in (first, second):
                await client.connect()  # signalling through the gateway
                client.send("set_prompt", {"prompt": "a lantern drifting on a dark lake"})
                client.send("start")
            hosts = {host_of(cluster, c.session_id) for c in (first, second)}
            assert hosts == {"rt-a", "rt-b"}  # one session per worker
            for client in (first, second):
                await client.wait("generation_started", within=60)
                await client.wait("chunk_complete", within=120)  # frames from its own worker
                assert len(await client.frames_until(lambda f: len(f) >= 5)) >= 5

            async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
                third = await http.post("/start_session", json={})
            assert third.status_code == 503, third.text
            assert third.headers["retry-after"] == "5"
            assert third.json()["error"]["code"] == "no_free_worker"

            lost = next(w for w in workers if w.name == host_of(cluster, first.session_id))
            second_host = host_of(cluster, second.session_id)
            lost.kill()

            async def ended() -> dict[str, object]:
                async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
                    while True:
                        answer = await http.get(f"/sessions/{first.session_id}")
                        body: dict[str, object] = answer.json()
                        if body.get("state") == "CLOSED":
                            return body
                        await asyncio.sleep(0.3)

            closed = await asyncio.wait_for(ended(), 30)
            assert closed["error"] == {
                "code": "worker_lost",
                "message": f"the worker running this session ({lost.name}) stopped; "
                "start a new one",
            }
            # the other session goes on, and its slot stays taken: nothing else was freed
            last = max(int(d["chunk_index"]) for d in second.of("chunk_complete"))
            await second.wait("chunk_complete", lambda d: d["chunk_index"] > last, within=120)
            await second.frames_until(lambda f: len(f) >= 10)
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
                again = await http.post("/start_session", json={})
                assert again.status_code == 503
                # coordinator mode waits instead: PENDING on the surviving worker, as today
                coordinator = {"Authorization": "Bearer any-token", "Reactor-API-Version": "1"}
                queued = await http.post("/sessions", json={}, headers=coordinator)
                assert queued.status_code == 200, queued.text
                waiting = queued.json()["session_id"]
                assert host_of(cluster, waiting) == second_host
                described = await http.get(f"/sessions/{waiting}", headers=coordinator)
                assert described.json()["state"] == "PENDING"
                deleted = await http.delete(f"/sessions/{waiting}", headers=coordinator)
                assert deleted.status_code == 200
            second.send("pause")
        finally:
            await first.close(stop=False)
            await second.close(stop=False)

    asyncio.run(main())


def test_vllm_omni_websocket_stream_through_the_gateway(roles: tuple[Role, list[Role]]) -> None:
    gateway, _ = roles
    start = {
        "type": "session.start",
        "model": "tiny",
        "prompt": "a lighthouse at dusk",
        "format": "m4s",
        "width": 64,
        "height": 64,
        "num_frames": 33,
        "seed": 3,
        "extra_params": {"pyramid_num_inference_steps_list": [1, 1, 1]},
    }

    async def stream() -> tuple[list[dict[str, Any]], bytes]:
        url = gateway.url.replace("http", "ws") + "/v1/realtime/video"
        async with connect(url, max_size=None) as ws:
            await ws.send(json.dumps(start))
            messages: list[dict[str, Any]] = []
            data = b""
            while True:
                raw = await asyncio.wait_for(ws.recv(), 120)
                if isinstance(raw, bytes):
                    data += raw
                    continue
                messages.append(json.loads(raw))
                if messages[-1]["type"] in ("session.done", "error"):
                    return messages, data

    async def main() -> tuple[list[dict[str, Any]], bytes]:
        for _ in range(60):  # a slot the previous test's sessions held frees within seconds
            messages, data = await stream()
            if messages[-1].get("code") != "busy":
                return messages, data
            await asyncio.sleep(0.5)
        raise TimeoutError("no worker had a free slot")

    messages, data = asyncio.run(main())
    assert [m["type"] for m in messages] == ["video.start", "video.chunk_metadata", "session.done"]
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 33
    assert frames[0].shape == (64, 64, 3)


def credential(cluster: LocalCluster, worker: Role) -> dict[str, str]:
    """The worker's session-port credential, as a gateway reads it from the registry."""
    with psycopg.connect(cluster.database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT session_token FROM helios_workers WHERE name = %s", (worker.name,)
        ).fetchone()
    assert row is not None
    assert row[0]
    return {"Authorization": f"Bearer {row[0]}"}


def test_metrics_of_gateway_and_workers(
    cluster: LocalCluster, roles: tuple[Role, list[Role]]
) -> None:
    gateway, workers = roles
    video_id = submit(gateway, request("metrics", chunks=2, seed=5))
    assert wait_done(gateway, video_id)["status"] == "completed"
    with httpx.Client(timeout=30) as http:
        text = http.get(gateway.url + "/metrics").text
        assert "helios_queue_depth 0.0" in text
        assert "helios_workers_alive" in text
        assert "helios_jobs_resumed_from_checkpoint" in text
        saved = 0.0
        for worker in workers:
            if worker.proc is None or worker.proc.poll() is not None:
                continue
            port = worker.args[worker.args.index("--session-port") + 1]
            url = f"http://127.0.0.1:{port}/metrics"
            assert http.get(url).status_code == 401  # the gateways' and operators' only
            for line in http.get(url, headers=credential(cluster, worker)).text.splitlines():
                counts = ("helios_checkpoint_bytes_count", "helios_checkpoint_seconds_count")
                if line.startswith(counts):
                    saved += float(line.split()[-1])
    assert saved == 4  # two chunks, each counted in both histograms


def test_coordinator_mode_session_through_the_gateway(
    cluster: LocalCluster, roles: tuple[Role, list[Role]]
) -> None:
    gateway, _ = roles
    headers = {"Authorization": "Bearer any-token", "Reactor-API-Version": "1"}
    with httpx.Client(base_url=gateway.url, timeout=30, headers=headers) as http:
        assert http.post("/tokens").json()["jwt"] == "local"
        created = http.post("/sessions", json={})
        assert created.status_code == 200, created.text
        session_id = created.json()["session_id"]
        assert host_of(cluster, session_id) in ("rt-a", "rt-b")
        described = http.get(f"/sessions/{session_id}").json()
        assert described["state"] in ("PENDING", "ACTIVE")
        assert http.delete(f"/sessions/{session_id}").status_code == 200
        assert http.get(f"/sessions/{session_id}").status_code == 404  # forgotten everywhere
