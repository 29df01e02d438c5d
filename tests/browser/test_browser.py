"""Real browsers against a real `helios serve`: the js-sdk, the playground, the videos page.

The tests (the SDK in local and in coordinator mode, the playground, the videos page without and
with `--api-key`) drive headless Chromium
(Debian's `/usr/bin/chromium`) through the Node harness in this folder (`package.json`:
`@reactor-team/js-sdk@2.9.0`, esbuild, playwright-core). They skip
where Chromium, node or npm is missing, so the Python suite runs anywhere; CI installs them.
Screenshots land in `$ARTIFACTS_DIR` (default `tests/browser/artifacts/`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.live_server import LiveServer, live_server

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")
NPM = shutil.which("npm")
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR") or HERE / "artifacts")
NODE_TEST_TIMEOUT_S = 540  # the scripts bound each wait themselves; this only stops a hang

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)",
    ),
    pytest.mark.skipif(
        NODE is None or NPM is None, reason="node and npm are needed for the browser tests"
    ),
]


def _lock_digest() -> str:
    return hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def node_harness() -> Path:
    """`npm ci` (skipped while node_modules matches the lockfile), then bundle the SDK page."""
    assert NPM is not None
    assert NODE is not None
    stamp = HERE / "node_modules" / ".helios-lock-sha256"
    digest = _lock_digest()
    if not stamp.exists() or stamp.read_text().strip() != digest:
        _run([NPM, "ci", "--no-audit", "--no-fund"], "npm ci", timeout=600)
        stamp.write_text(digest + "\n")
    _run([NODE, "build.mjs"], "node build.mjs", timeout=120)
    return HERE


def _run(cmd: list[str], what: str, timeout: float) -> None:
    done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


@pytest.fixture
def helios(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh server per test: local mode has a single session, so a test that fails midway
    cannot leave it taken for the next one."""
    with live_server(tmp_path / "data") as server:
        yield server


API_KEY = "browser-test-key"


@pytest.fixture
def helios_with_key(tmp_path: Path) -> Iterator[LiveServer]:
    """Keys required, and a queue of one so that the page can be shown a real 429."""
    with live_server(tmp_path / "data", "--api-key", API_KEY, "--max-queue", "1") as server:
        yield server


def _run_node_test(
    script: str, server: LiveServer, screenshot: str, extra_env: dict[str, str] | None = None
) -> dict[str, object]:
    """Runs one node script against `server`; returns its JSON verdict, fails with all logs."""
    assert NODE is not None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / screenshot).unlink(missing_ok=True)  # a stale file must not pass the check
    env = {
        **os.environ,
        "HELIOS_URL": server.url,
        "ARTIFACTS_DIR": str(ARTIFACTS),
        "CHROMIUM": CHROMIUM,
        **(extra_env or {}),
    }
    done = subprocess.run(
        [NODE, script],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TEST_TIMEOUT_S,
    )
    summary: dict[str, object] = {}
    lines = done.stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        summary = json.loads(lines[-1])
    if done.returncode != 0 or summary.get("ok") is not True:
        pytest.fail(
            f"{script} failed ({done.returncode}).\n"
            f"--- node stdout ---\n{done.stdout[-4000:]}\n"
            f"--- node stderr ---\n{done.stderr[-6000:]}\n"
            f"--- helios serve log ---\n{server.tail()}"
        )
    assert (ARTIFACTS / screenshot).is_file(), f"{script} wrote no {screenshot}"
    return summary


@pytest.mark.parametrize(
    ("mode", "screenshot"), [("local", "sdk.png"), ("coordinator", "sdk-coordinator.png")]
)
def test_reactor_js_sdk_streams_from_helios_serve(
    node_harness: Path, helios: LiveServer, mode: str, screenshot: str
) -> None:
    """local: `local: true` (POST /start_session, POST /stop_session). coordinator: no `local`,
    `connect(jwt)` (POST /sessions, GET /sessions/{id} until ACTIVE, DELETE /sessions/{id})."""
    summary = _run_node_test("run_sdk_test.mjs", helios, screenshot, {"SDK_MODE": mode})
    assert summary["mode"] == mode
    video = summary["video"]
    assert isinstance(video, dict)
    assert video["width"] > 0
    assert video["advanced"] >= 1.0
    sr_video = summary["sr_video"]  # after set_sr_scale 2x
    assert isinstance(sr_video, dict)
    assert (sr_video["width"], sr_video["height"]) == (2 * video["width"], 2 * video["height"])
    counts = summary["event_counts"]
    assert isinstance(counts, dict)
    assert counts.get("chunk_complete", 0) >= 2
    assert counts.get("chunk_shown", 0) >= 2  # a newer event, tolerated by the 2.9.0 SDK
    calls = summary["calls"]
    assert isinstance(calls, list)
    session = summary["session_id"]
    if mode == "coordinator":
        assert f"DELETE /sessions/{session} 200" in calls
        assert not any("start_session" in c or "stop_session" in c for c in calls)
    else:
        assert calls[0].startswith("POST /start_session")


def test_playground_page_drives_a_session(node_harness: Path, helios: LiveServer) -> None:
    summary = _run_node_test("run_playground_test.mjs", helios, "playground.png")
    counts = summary["event_counts"]
    assert isinstance(counts, dict)
    assert counts.get("generation_reset", 0) >= 1


def test_videos_page_makes_watches_remixes_and_deletes(
    node_harness: Path, helios: LiveServer
) -> None:
    """Playground → Videos; a job (I2V, custom pyramid steps) to 100 %; thumbnail, spritesheet
    scrub, play, download; remix; cancel; Load more; delete; `videos.png` at 1280x800."""
    summary = _run_node_test("run_videos_test.mjs", helios, "videos.png")
    video = summary["video"]
    assert isinstance(video, dict)
    assert (video["width"], video["height"]) == (192, 128)
    assert video["advanced"] >= 0.5
    for key in ("first_progress", "remix_progress"):
        progress = summary[key]
        assert isinstance(progress, dict)
        assert progress["progress_seen"][-1] == 100
        assert progress["card_size"] is not None  # sampled while the job ran
    assert summary["scrub_frame"] == "12"
    assert isinstance(summary["download_bytes"], int)
    assert summary["download_bytes"] > 1000


def test_videos_page_with_an_api_key(node_harness: Path, helios_with_key: LiveServer) -> None:
    """401 without and with a wrong key, the key kept in localStorage and sent as a bearer
    token on every call (media through blob: URLs), 429 from a full queue, 503, Forget."""
    summary = _run_node_test(
        "run_videos_test.mjs", helios_with_key, "videos-api-key.png", {"HELIOS_API_KEY": API_KEY}
    )
    video = summary["video"]
    assert isinstance(video, dict)
    assert video["src"] == "blob:"
    assert video["width"] == 192
    paths = summary["bearer_paths"]
    assert isinstance(paths, list)
    assert "POST /v1/videos" in paths
    assert "GET /v1/videos/{id}/content?variant=video" in paths
    assert "Try again in 10 s" in str(summary["message_429"])
    assert "(503)" in str(summary["message_503"])
