"""One request vocabulary: the same bad value is refused with the same message at every way in
(the job API's create, remix and extend; vLLM-Omni's WebSocket; Reactor sessions; the CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from helios_serve.api.app import ApiConfig
from helios_serve.cli import main as cli_main
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.core.requests import (
    MAX_PROMPT_CHARS,
    RequestError,
    check_prompt,
    check_seed,
    check_side,
)
from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
from helios_serve.realtime.config import RealtimeConfig

PYRAMID = FakeEngineConfig().info  # the fake serves a 3-stage pyramid: sides are 64-multiples


def refusal(check: Callable[[], object]) -> str:
    with pytest.raises(RequestError) as info:
        check()
    return info.value.message


LONG_PROMPT = "x" * (MAX_PROMPT_CHARS + 1)
PROMPT_MESSAGE = refusal(lambda: check_prompt(LONG_PROMPT))
SEED_MESSAGE = refusal(lambda: check_seed(-2))
WIDTH_MESSAGE = refusal(lambda: check_side(656, "width", PYRAMID))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path_factory.mktemp("vocabulary"), idle_poll_s=0.05)
    config = RealtimeConfig(width=64, height=64, settings=SamplingSettings())
    sessions = Sessions(config, lambda frames, _scale: frames)
    application = build_app(engine, jobs=JobApi(parts, ApiConfig()), sessions=sessions)
    with TestClient(application) as client:
        yield client
    parts.store.close()


def api_message(response: Any, param: str) -> str:
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["param"] == param
    return str(error["message"])


def ws_message(client: TestClient, start: dict[str, Any]) -> str:
    with client.websocket_connect("/v1/realtime/video") as ws:
        ws.send_text(json.dumps({"type": "session.start", "prompt": "p", **start}))
        reply = ws.receive_json()
    assert reply["type"] == "error", reply
    return str(reply["message"])


def test_a_prompt_over_the_cap(app: TestClient, tmp_path: Path) -> None:
    assert f"over the limit of {MAX_PROMPT_CHARS}" in PROMPT_MESSAGE
    made = app.post("/v1/videos", json={"prompt": "ok", "size": "64x64", "num_frames": 33})
    source = made.json()["id"]
    for _ in range(200):
        if app.get(f"/v1/videos/{source}").json()["status"] == "completed":
            break
    edges = {
        "create": app.post("/v1/videos", json={"prompt": LONG_PROMPT}),
        "remix": app.post(f"/v1/videos/{source}/remix", json={"prompt": LONG_PROMPT}),
        "extend": app.post(
            "/v1/videos/extensions",
            json={"video": {"id": source}, "prompt": LONG_PROMPT, "seconds": "2"},
        ),
    }
    for name, response in edges.items():
        assert api_message(response, "prompt") == PROMPT_MESSAGE, name
    assert ws_message(app, {"prompt": LONG_PROMPT}) == PROMPT_MESSAGE
    reason = reactor_reason("set_prompt", {"prompt": LONG_PROMPT})
    assert reason == f"invalid_field: {PROMPT_MESSAGE}"
    assert cli_error(tmp_path, "--prompt", LONG_PROMPT) == f"--prompt: {PROMPT_MESSAGE}"


def test_a_seed_out_of_range(app: TestClient, tmp_path: Path) -> None:
    response = app.post("/v1/videos", json={"prompt": "p", "seed": -2})
    assert api_message(response, "seed") == SEED_MESSAGE
    assert ws_message(app, {"seed": -2}) == SEED_MESSAGE
    assert reactor_reason("set_seed", {"seed": -2}) == f"invalid_field: {SEED_MESSAGE}"
    assert cli_error(tmp_path, "--prompt", "p", "--seed", "-2") == f"--seed: {SEED_MESSAGE}"


def test_a_width_the_pyramid_cannot_make(app: TestClient) -> None:
    """656 is a multiple of 16 but not of 64: a job makes the covering size and cuts it (its
    MP4 is 656 wide); a live stream cannot cut, so the WS and Reactor refuse it the same way."""
    response = app.post("/v1/videos", json={"prompt": "p", "width": 656})
    assert response.status_code == 200, response.text
    assert response.json()["size"].startswith("656x")
    assert ws_message(app, {"width": 656}) == WIDTH_MESSAGE
    session = app.post("/start_session", json={"extra_args": {"width": 656}})
    assert api_message(session, "extra_args.width") == WIDTH_MESSAGE
    assert app.post("/start_session", json={"extra_args": {"width": 640}}).status_code == 200
    assert app.post("/stop_session", json={}).status_code in (200, 404)


def reactor_reason(command: str, data: dict[str, Any]) -> str:
    from helios_serve.realtime.reactor import commands
    from helios_serve.realtime.reactor import protocol as wire

    raw = json.dumps({"scope": "application", "data": {"type": command, "data": data}})
    with pytest.raises(wire.CommandError) as info:
        commands.parse_command(wire.parse_envelope(raw))
    return info.value.reason


def cli_error(tmp_path: Path, *args: str) -> str:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        argv = ["generate", "--model", "tiny", "--data-dir", str(tmp_path), *args]
        code = cli_main([*argv, "--out", str(tmp_path / "x.npy")])
    assert code == 2
    return err.getvalue().strip().removeprefix("helios generate: error: ")
