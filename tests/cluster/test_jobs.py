"""Jobs across machines, for real: PostgreSQL, SeaweedFS's S3, `helios gateway` and several
`helios worker` processes on loopback, the tiny model on CPU.

One module, one cluster (its roles start once; each test tops the workers up to what it
needs), in the order the issue asks: parity with single-node, `kill -9` takeover, a paused
zombie refused."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import (
    FAST_UPKEEP,
    WORKER_FLAGS,
    LocalCluster,
    Role,
    digest,
    get,
    request,
    start_together,
    stored_keys,
    submit,
    wait_done,
    wait_until,
    worker_running,
)

pytestmark = pytest.mark.slow

PARITY = request("a lighthouse in a storm", chunks=4, seed=21)
"""The one request every test here makes: 4 chunks, so its MP4s can all be compared."""
FINAL_FILES = [
    "spritesheet.jpg",
    "state.safetensors",
    "state.safetensors.sha256",
    "tail.mp4",
    "thumbnail.jpg",
    "video.mp4",
]


class Workers:
    """The module's workers: started on demand, named in order."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.roles: list[Role] = []

    def alive(self) -> list[Role]:
        return [r for r in self.roles if r.proc is not None and r.proc.poll() is None]

    def top_up(self, count: int) -> list[Role]:
        new = []
        while len(self.alive()) + len(new) < count:
            name = f"worker-{len(self.roles) + len(new) + 1}"
            new.append(self.cluster.worker(name, *WORKER_FLAGS, *FAST_UPKEEP, start=False))
        start_together(new)
        self.roles += new
        return self.alive()

    def ran(self, video_id: str) -> list[str]:
        """Which workers' logs say they took `video_id`."""
        return [r.name for r in self.roles if any(f"job {video_id}: attempt" in x for x in r.log)]

    def named(self, name: str) -> Role:
        return next(r for r in self.roles if r.name == name)


@pytest.fixture(scope="module")
def workers(cluster: LocalCluster) -> Workers:
    return Workers(cluster)


@pytest.fixture(scope="module")
def gateway(cluster: LocalCluster, workers: Workers) -> Role:
    workers.top_up(2)  # a gateway learns the model from the first worker
    return cluster.gateway("gateway-1", *FAST_UPKEEP)


EXTEND = {"prompt": "the storm clears", "seconds": "2"}


@pytest.fixture(scope="module")
def single_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The MP4s `helios serve` (SQLite, a local folder, no cluster) makes for `PARITY` and
    for `EXTEND` of it."""
    data = tmp_path_factory.mktemp("single-node")
    from local_cluster import free_port  # type: ignore[import-not-found]

    port = free_port()
    args = [
        "serve",
        "--model",
        "tiny",
        "--engine-isolation",
        "thread",
        "--data-dir",
        str(data),
        "--port",
        str(port),
    ]
    server = Role("serve", args, {}, "helios-serve ready", port=port)
    server.start()
    try:
        video_id = submit(server, PARITY)
        assert wait_done(server, video_id)["status"] == "completed"
        longer = extend(server, video_id)
        assert wait_done(server, longer)["status"] == "completed"
        yield {"parity": digest(server, video_id), "extension": digest(server, longer)}
    finally:
        server.stop()


def extend(gateway: Role, video_id: str) -> str:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        answer = http.post("/v1/videos/extensions", json={"video": {"id": video_id}, **EXTEND})
    assert answer.status_code == 200, answer.text
    assert answer.json()["extension_mode"] == "state"
    longer: str = answer.json()["id"]
    return longer


def test_cluster_mp4_is_byte_identical_to_single_node(
    gateway: Role, workers: Workers, cluster: LocalCluster, single_node: dict[str, str]
) -> None:
    workers.top_up(2)
    video_id = submit(gateway, PARITY)
    video = wait_done(gateway, video_id)
    assert video["status"] == "completed", video
    assert video["chunks_done"] == 4
    assert video["resumed_from_chunk"] is None
    assert digest(gateway, video_id) == single_node["parity"]
    # what stays in the store: the finished files only (chunks and states are gone)
    assert stored_keys(cluster, video_id) == FINAL_FILES


def test_extension_made_on_another_worker_than_its_source(
    gateway: Role, workers: Workers, cluster: LocalCluster, single_node: dict[str, str]
) -> None:
    workers.top_up(2)
    source = submit(gateway, PARITY)
    assert wait_done(gateway, source)["status"] == "completed"
    (maker,) = workers.ran(source)
    workers.named(maker).signal(signal.SIGSTOP)  # so the other worker must take it
    try:
        longer = extend(gateway, source)
        wait_until(lambda: workers.ran(longer), 120, "a worker to take the extension")
    finally:
        workers.named(maker).signal(signal.SIGCONT)
    video = wait_done(gateway, longer)
    assert video["status"] == "completed", video
    assert maker not in workers.ran(longer)
    assert digest(gateway, longer) == single_node["extension"]
    assert stored_keys(cluster, longer) == FINAL_FILES  # its base copies are gone too


def test_delete_cancels_the_job_on_whichever_worker_runs_it(
    gateway: Role, workers: Workers, cluster: LocalCluster
) -> None:
    workers.top_up(2)
    video_id = submit(gateway, request("a slow sunrise", chunks=6, seed=4))

    def running() -> bool:
        video = get(gateway, video_id)
        return bool(video["status"] == "in_progress" and video["chunks_done"] >= 1)

    wait_until(running, 240, "the job to run", poll_s=0.05)
    (runner,) = workers.ran(video_id)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        assert http.delete(f"/v1/videos/{video_id}").status_code == 200
        assert http.get(f"/v1/videos/{video_id}").status_code == 404
    log = workers.named(runner).log
    wait_until(lambda: any(f"job {video_id} cancelled" in x for x in log), 30, "the cancel")
    time.sleep(1)  # a write the stopped job still made would land now
    assert stored_keys(cluster, video_id) == []


def test_kill_9_worker_mid_job_another_resumes_at_its_checkpoint(
    gateway: Role, workers: Workers, cluster: LocalCluster, single_node: dict[str, str]
) -> None:
    workers.top_up(3)
    jobs = [submit(gateway, PARITY) for _ in range(8)]

    def past_chunk_2() -> tuple[str, str] | None:
        for video_id in jobs:
            video = get(gateway, video_id)
            if video["status"] == "in_progress" and 2 <= video["chunks_done"] < 4:
                name = worker_running(cluster, video_id)
                if name is not None:
                    return video_id, name
        return None

    victim, name = wait_until(past_chunk_2, 240, "a job past chunk 2", poll_s=0.05)
    saved = get(gateway, victim)["chunks_done"]
    workers.named(name).kill()  # SIGKILL: no goodbye, no requeue, a lease left to expire

    videos = {video_id: wait_done(gateway, video_id, timeout=400) for video_id in jobs}
    assert all(v["status"] == "completed" for v in videos.values()), videos
    killed = videos[victim]
    # the second attempt began where the first one's last saved chunk ended, not at 0
    assert killed["resumed_from_chunk"] is not None
    assert killed["resumed_from_chunk"] >= saved
    assert killed["chunks_done"] == 4
    # and the taker said so: its log names the chunk it resumed at, the gateway counts it
    taker = [w for w in workers.ran(victim) if w != name]
    assert len(taker) == 1, workers.ran(victim)
    at = f"job {victim} resumes at chunk {killed['resumed_from_chunk']} of 4"
    assert any(at in line for line in workers.named(taker[0]).log), at
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        metrics = http.get("/metrics").text
    resumed = [
        x for x in metrics.splitlines() if x.startswith("helios_jobs_resumed_from_checkpoint ")
    ]
    assert len(resumed) == 1, metrics
    assert float(resumed[0].split()[-1]) >= 1, resumed
    for video_id in jobs:
        assert digest(gateway, video_id) == single_node["parity"]
        assert stored_keys(cluster, video_id) == FINAL_FILES


def test_paused_worker_cannot_overwrite_the_job_it_lost(
    gateway: Role, workers: Workers, cluster: LocalCluster, single_node: dict[str, str]
) -> None:
    alive = workers.top_up(2)
    video_id = submit(gateway, request("a lighthouse in a storm", chunks=6, seed=21))

    def running_past_chunk_1() -> str | None:
        video = get(gateway, video_id)
        if video["status"] == "in_progress" and video["chunks_done"] >= 1:
            return worker_running(cluster, video_id)
        return None

    name = wait_until(running_past_chunk_1, 240, "the job to pass chunk 1", poll_s=0.05)
    zombie = workers.named(name)
    assert zombie in alive
    zombie.signal(signal.SIGSTOP)  # paused past its lease: the queue hands the job on
    try:
        video = wait_done(gateway, video_id, timeout=300)
    finally:
        zombie.signal(signal.SIGCONT)
    assert video["status"] == "completed", video
    first = video["completed_at"]

    # its first write after waking (a heartbeat, a step's progress, a chunk) is refused and
    # the job stops there: logged as cancelled, or as a refused write
    stopped = (f"job {video_id} cancelled", f"job {video_id}: this attempt's write was refused")
    wait_until(
        lambda: any(s in line for s in stopped for line in zombie.log), 60, "the zombie to stop"
    )
    time.sleep(2)  # anything the zombie still wrote would land now
    after = get(gateway, video_id)
    assert after["status"] == "completed"
    assert after["completed_at"] == first
    assert after["resumed_from_chunk"] is not None
    assert stored_keys(cluster, video_id) == FINAL_FILES
    assert zombie.proc is not None
    assert zombie.proc.poll() is None, "the zombie lives on"
    # and it is a good worker again: a new job on two workers completes
    again = submit(gateway, PARITY)
    assert wait_done(gateway, again)["status"] == "completed"
    assert digest(gateway, again) == single_node["parity"]
