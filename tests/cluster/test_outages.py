"""Outages of the shared parts: PostgreSQL restarted under a running cluster, and a gateway
killed mid-run. Nothing acknowledged is lost; while the database is away the gateways answer
503 with Retry-After (never 500), and everything recovers on its own."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from .conftest import (
    FAST_UPKEEP,
    WORKER_FLAGS,
    LocalCluster,
    Role,
    request,
    start_together,
    submit,
    wait_done,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(cluster: LocalCluster) -> list[Role]:
    started = [cluster.worker(n, *WORKER_FLAGS, *FAST_UPKEEP, start=False) for n in "ab"]
    start_together(started)
    return started


@pytest.fixture(scope="module")
def roles(cluster: LocalCluster, workers: list[Role]) -> tuple[Role, Role]:
    gateways = [cluster.gateway(f"gateway-{n}", *FAST_UPKEEP, start=False) for n in "ab"]
    start_together(gateways)
    return gateways[0], gateways[1]


def test_postgres_restart_mid_run_loses_nothing_and_answers_503_meanwhile(
    cluster: LocalCluster, workers: list[Role], roles: tuple[Role, Role]
) -> None:
    gateway, _ = roles
    jobs = [
        submit(gateway, request(f"a kite over a beach {i}", chunks=3, seed=i)) for i in range(4)
    ]
    time.sleep(1.0)  # some are running, some wait
    cluster.postgres.stop("fast")
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            answers = [
                http.post("/v1/videos", data=request("while away", chunks=1, seed=1)),
                http.get(f"/v1/videos/{jobs[0]}"),
                http.get("/v1/videos"),
                http.get("/ready"),
            ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
        assert answers[0].json()["error"]["code"] == "store_unavailable"
        assert answers[0].headers["retry-after"] == "2"
    finally:
        cluster.postgres.start()

    def answers_again() -> bool:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            return http.get(f"/v1/videos/{jobs[0]}").status_code == 200

    wait_until(answers_again, 30, "the gateway to answer again", poll_s=0.3)
    later = submit(gateway, request("after the restart", chunks=1, seed=9))
    for video_id in [*jobs, later]:
        video = wait_done(gateway, video_id, timeout=300)
        logs = "".join(line for w in workers for line in w.log[-40:])
        assert video["status"] == "completed", (video, logs)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        ready = wait_until(lambda: http.get("/ready").status_code == 200, 30, "ready again")
    assert ready


def test_idempotency_key_holds_across_gateways(roles: tuple[Role, Role]) -> None:
    body = request("one job, two gateways", chunks=1, seed=3)
    answers: list[httpx.Response] = []

    def create(gateway: Role) -> None:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            headers = {"Idempotency-Key": "across-gateways"}
            answers.append(http.post("/v1/videos", data=body, headers=headers))

    threads = [threading.Thread(target=create, args=(g,)) for g in (*roles, *roles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.json()["id"] for a in answers}) == 1
    with httpx.Client(base_url=roles[1].url, timeout=30) as http:
        other = {**body, "seed": "4"}
        reused = http.post("/v1/videos", data=other, headers={"Idempotency-Key": "across-gateways"})
    assert reused.status_code == 409, reused.text
    assert wait_done(roles[1], answers[0].json()["id"])["status"] == "completed"


def test_gateway_killed_mid_run_loses_no_acknowledged_job(
    cluster: LocalCluster, roles: tuple[Role, Role]
) -> None:
    doomed, survivor = roles
    acknowledged: list[str] = []
    stop = threading.Event()

    def keep_creating() -> None:
        with httpx.Client(base_url=doomed.url, timeout=10) as http:
            for i in range(8):
                if stop.is_set():
                    return
                try:
                    answer = http.post("/v1/videos", data=request("a gull", chunks=1, seed=i))
                except httpx.HTTPError:
                    return  # the gateway is gone: what it acknowledged is what counts
                if answer.status_code == 200:
                    acknowledged.append(answer.json()["id"])

    creator = threading.Thread(target=keep_creating)
    creator.start()
    wait_until(lambda: len(acknowledged) >= 5, 60, "a few acknowledged creates")
    doomed.kill()  # SIGKILL, mid-stream
    stop.set()
    creator.join(timeout=30)
    assert acknowledged
    for video_id in acknowledged:  # every acknowledged job exists and runs, on any gateway
        assert wait_done(survivor, video_id, timeout=300)["status"] == "completed"
    doomed.start()  # a restarted gateway serves the same jobs
    assert wait_done(doomed, acknowledged[0])["status"] == "completed"


def test_a_gateway_with_keys_guards_jobs_sessions_and_the_stream(
    cluster: LocalCluster, roles: tuple[Role, Role]
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    guarded = cluster.gateway("gateway-keyed", *FAST_UPKEEP, "--api-key", "s3cret")
    with httpx.Client(base_url=guarded.url, timeout=30) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/v1/videos").status_code == 401
        assert http.post("/start_session", json={}).status_code == 401
        keyed = http.get("/v1/videos", headers={"Authorization": "Bearer s3cret"})
        assert keyed.status_code == 200

    async def stream_without_key() -> int | None:
        url = guarded.url.replace("http", "ws") + "/v1/realtime/video"
        async with connect(url) as ws:
            try:
                await ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else None
        return None

    assert asyncio.run(stream_without_key()) == 1008


def test_ready_and_workers_alive_follow_the_workers(
    workers: list[Role], roles: tuple[Role, Role]
) -> None:
    gateway = roles[1]

    def alive_metric(http: httpx.Client) -> float:
        for line in http.get("/metrics").text.splitlines():
            if line.startswith("helios_workers_alive "):
                return float(line.split()[-1])
        raise AssertionError("no helios_workers_alive in /metrics")

    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        ready = http.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert alive_metric(http) == 2
        for worker in workers:
            worker.kill()  # no goodbye: their heartbeats just stop
        wait_until(lambda: http.get("/ready").status_code == 503, 30, "/ready to say 503")
        assert http.get("/ready").json()["status"] == "unavailable"
        assert alive_metric(http) == 0
        assert http.get("/health").status_code == 200  # the gateway itself is fine
        workers[0].start()  # one worker back is enough
        wait_until(lambda: http.get("/ready").status_code == 200, 30, "/ready to say 200")
        assert alive_metric(http) == 1
