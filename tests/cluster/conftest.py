"""A real cluster on loopback: PostgreSQL 15 and SeaweedFS (started once per session by
`scripts/local_cluster.py`, the script the README documents), and per test module its own
database, S3 prefix, workers and gateways on the tiny model."""

from __future__ import annotations

import hashlib
import itertools
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from local_cluster import BUCKET, LocalCluster, Role, local_cluster_missing

_names = itertools.count(1)

SMALL = {"size": "128x64", "extra_params": '{"pyramid_num_inference_steps_list": [1, 1, 1]}'}
"""Every cluster test's videos: small and one step per stage, so chunks take well under 1 s."""

FAST_UPKEEP = ("--worker-timeout", "4")
WORKER_FLAGS = ("--model", "tiny", "--engine-isolation", "thread", "--heartbeat-interval", "0.5")


def request(prompt: str, chunks: int, seed: int) -> dict[str, str]:
    return {"prompt": prompt, "num_frames": str(33 * chunks), "seed": str(seed), **SMALL}


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    missing = local_cluster_missing()
    if missing:  # installed by `make test` (scripts/install-cluster-deps.sh)
        pytest.skip(missing)
    cluster = LocalCluster.up()  # a start that fails is a failure, never a skip
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def cluster(local_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's servers with a fresh database and S3 prefix; the module's roles stop
    when it ends."""
    n = next(_names)
    local_cluster.database = local_cluster.postgres.create_database(f"helios_t{n}")
    local_cluster.storage = f"s3://{BUCKET}/t{n}"
    yield local_cluster
    local_cluster.stop_roles()


@pytest.fixture
def s3_env(local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 endpoint and keys in this process's environment (boto3 reads them there), for
    gateways and workers run in-process."""
    for key, value in local_cluster.env.items():
        monkeypatch.setenv(key, value)


def start_together(roles: list[Role]) -> None:
    """Start processes side by side (each loads its own model: minutes saved in CI)."""
    threads = [threading.Thread(target=role.start) for role in roles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for role in roles:
        assert role.proc is not None
        assert role.proc.poll() is None, "".join(role.log[-30:])


def submit(gateway: Role, body: dict[str, str], **headers: str) -> str:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        response = http.post("/v1/videos", data=body, headers=headers)
    assert response.status_code == 200, response.text
    video_id: str = response.json()["id"]
    return video_id


def get(gateway: Role, video_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        response = http.get(f"/v1/videos/{video_id}")
    assert response.status_code == 200, response.text
    video: dict[str, Any] = response.json()
    return video


def wait_until(check: Any, timeout: float, what: str, poll_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def wait_done(gateway: Role, video_id: str, timeout: float = 300) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        video = get(gateway, video_id)
        return video if video["status"] in ("completed", "failed") else None

    result: dict[str, Any] = wait_until(done, timeout, f"{video_id} to finish", poll_s=0.3)
    return result


def digest(gateway: Role, video_id: str) -> str:
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        response = http.get(f"/v1/videos/{video_id}/content")
    assert response.status_code == 200, response.text
    return hashlib.sha256(response.content).hexdigest()


def worker_running(cluster: LocalCluster, video_id: str) -> str | None:
    """The name of the worker whose registry row says it runs `video_id`."""
    with psycopg.connect(cluster.database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT name FROM helios_workers WHERE running_job = %s", (video_id,)
        ).fetchone()
    return None if row is None else str(row[0])


def stored_keys(cluster: LocalCluster, video_id: str) -> list[str]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=cluster.s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id="helios",
        aws_secret_access_key="helios-secret",
    )
    prefix = cluster.storage.removeprefix(f"s3://{BUCKET}/") + f"/{video_id}/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for p in pages for o in p.get("Contents", []))
