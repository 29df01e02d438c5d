"""The attacks of issue 10 against a real `helios serve` process (tiny model, loopback): bad
start-ups, a second server on the same folder, orphan folders, slowloris, a body too large to
hold, and repeated SIGTERMs during a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.attacks import flood_is_refused, slow_heads_are_cut
from tests.live_server import LiveServer

from helios_serve.compose.single import prepare_store
from helios_serve.jobs.models import new_job_id

pytestmark = pytest.mark.slow
MAX_CONNECTIONS = 16
SMALL = {"prompt": "a lighthouse in fog", "size": "128x128", "num_frames": "33"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helios_serve.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0], errors[0]


# -- 2. an empty key is refused ---------------------------------------------------------------


def test_empty_api_key_is_refused(tmp_path: Path) -> None:
    assert_one_line_exit_2(run_cli("--data-dir", str(tmp_path), "--api-key", ""), "empty")
    unset = run_cli("--data-dir", str(tmp_path), env={"HELIOS_API_KEYS": ""})
    assert_one_line_exit_2(unset, "HELIOS_API_KEYS")


# -- 13. start-up failures are one line, before the model loads -------------------------------


def test_garbage_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "jobs.db").write_bytes(b"this is not sqlite" * 100)
    assert_one_line_exit_2(run_cli("--data-dir", str(tmp_path)), "jobs.db", "backup")


def test_truncated_database_is_one_line(tmp_path: Path) -> None:
    prepare_store(tmp_path).close()  # a real database with its schema, cut in half
    path = tmp_path / "jobs.db"
    data = path.read_bytes()
    assert len(data) > 8192
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_exit_2(run_cli("--data-dir", str(tmp_path)), "jobs.db", "malformed")


def test_lost_database_beside_job_folders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "videos" / new_job_id()).mkdir(parents=True)
    (tmp_path / "jobs.db").write_bytes(b"")  # zero bytes: SQLite would start an empty list
    assert_one_line_exit_2(run_cli("--data-dir", str(tmp_path)), "job folders")


def test_unusable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_one_line_exit_2(run_cli("--data-dir", str(blocker / "data")), "data directory")
    if os.geteuid() != 0:  # root writes anywhere: the mode bits cannot stop it
        readonly = tmp_path / "ro"
        readonly.mkdir(mode=0o500)
        assert_one_line_exit_2(run_cli("--data-dir", str(readonly)), str(readonly))


# -- a running server: 5 (second server), 14 (orphans), 10 (slowloris), 9 (huge body) ---------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("hardening")
    server = LiveServer(data_dir, "tiny", "tiny", ["--max-connections", str(MAX_CONNECTIONS)])
    server.start()
    server.stop()  # the database exists now: a folder without a row is an orphan
    orphan = data_dir / "videos" / new_job_id()
    orphan.mkdir(parents=True)
    (orphan / "reference.png").write_bytes(b"left by a kill -9 during a create")
    server.start()
    try:
        assert not orphan.exists(), "the orphan folder was not swept at start"
        yield server
    finally:
        server.kill()


def test_second_server_on_the_same_folder_exits_2_naming_the_holder(live: LiveServer) -> None:
    assert live.proc is not None
    result = run_cli("--data-dir", str(live.data_dir))
    assert_one_line_exit_2(result, f"pid {live.proc.pid}")
    with live.client() as http:  # the first one is untouched
        assert http.get("/ready").status_code == 200


def test_slow_heads_are_cut_and_a_flood_is_refused(live: LiveServer) -> None:
    """The attacks a gateway and a worker's session port resist alike
    (`tests/cluster/test_shapes.py`): the same launcher serves all three."""
    slow_heads_are_cut("127.0.0.1", live.port, within_s=25, sockets=MAX_CONNECTIONS // 2)
    flood_is_refused("127.0.0.1", live.port, MAX_CONNECTIONS)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_huge_chunked_body_is_not_held_in_memory(live: LiveServer) -> None:
    assert live.proc is not None
    before = _peak_rss_mib(live.proc.pid)
    piece = b" " * (1 << 20)

    def body() -> Iterator[bytes]:
        for _ in range(300):  # 300 MiB, streamed without a Content-Length
            yield piece

    try:
        with httpx.Client(base_url=live.url, timeout=60) as http:
            response = http.post(
                "/start_session", content=body(), headers={"Content-Type": "application/json"}
            )
        assert response.status_code == 413
    except httpx.TransportError:
        pass  # answered 413 and closed while the client was still sending
    grew = _peak_rss_mib(live.proc.pid) - before
    assert grew < 100, f"peak memory grew {grew:.0f} MiB for a body that should be cut off"


# -- 15. repeated SIGTERM during a job: exit 0, the job runs again after the restart ----------


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_repeated_sigterm_during_a_job_exits_0_and_keeps_the_job(
    tmp_path: Path, isolation: str
) -> None:
    server = LiveServer(tmp_path, "tiny", "tiny", ["--engine-isolation", isolation])
    server.start()
    try:
        with server.client() as http:
            response = http.post("/v1/videos", data={**SMALL, "num_frames": "99"})
            video_id = response.json()["id"]
            deadline = time.monotonic() + 120
            while http.get(f"/v1/videos/{video_id}").json()["progress"] < 5:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert server.proc is not None
        for _ in range(3):
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        assert server.proc.wait(timeout=120) == 0, "".join(server.log[-30:])
        assert any("queued again" in line for line in server.log), "".join(server.log[-30:])
    finally:
        server.kill()
    server.start()
    try:
        assert server.wait_done(video_id, timeout=900)["status"] == "completed"
    finally:
        server.kill()
