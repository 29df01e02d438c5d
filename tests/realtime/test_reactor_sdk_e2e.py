"""Reactor's own Python client, `reactor-sdk` 1.13.0 from PyPI, unmodified, against a real
`helios serve` on the tiny model, in local mode and in coordinator mode: connect, prompt, start,
chunks and frames, a scheduled prompt, a rejected command, an uploaded image, SR 2x, pause,
resume, reconnect, disconnect and the slot freed.

That client speaks the newer flow (registered connection, trickled ICE, a "control" channel next
to "data", protobuf `reactor_wire.v1`) and awaits a correlated reply to every `send_command`
within 10 s; a missing reply raises `RequestTimeoutError` and fails the test. Its libwebrtc core
decodes the video: frame sizes are what the browser would see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from tests.live_server import live_server
from tests.reactor_client import HEADERS

from .conftest import png_bytes

reactor_sdk = pytest.importorskip(
    "reactor_sdk", reason="reactor-sdk==1.13.0 is a dev dependency: run `make install`"
)

pytestmark = pytest.mark.slow

SERVED = (128, 192)
"""(height, width) the tiny model serves at (its default, 192x128: README, `helios generate`)."""
PROMPT = "a lighthouse on a rocky coast at dusk, waves breaking below, wide shot"
LATER = "the same lighthouse, lightning strikes the sea behind it, wide shot"
WAIT_S = 180.0
"""Per wait: the tiny CPU engine is slower than real time, and the machine may be busy."""


class Seen:
    """What the client handed its callbacks (frames arrive on the SDK's own thread)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.frames: list[tuple[tuple[int, ...], float]] = []

    def on_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def on_frame(self, frame: np.ndarray[Any, Any]) -> None:
        self.frames.append((frame.shape, float(frame[::8, ::8].std())))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m["data"] for m in list(self.messages) if m.get("type") == kind]

    def chunks(self) -> list[dict[str, Any]]:
        return self.of("chunk_complete")

    async def until(self, check: Callable[[], Any], what: str, within: float = WAIT_S) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`helios serve` on the tiny model, one session slot (the default), on CPU."""
    data_dir = tmp_path_factory.mktemp("reactor-sdk") / "data"
    with live_server(data_dir, "--device", "cpu") as server:
        yield server.url


def _sizes(seen: Seen, shape: tuple[int, int]) -> list[float]:
    return [std for s, std in list(seen.frames) if s[:2] == shape]


async def _session(url: str, mode: str) -> None:
    if mode == "local":
        client = reactor_sdk.Reactor("helios", local=True, api_url=url)
    else:  # coordinator: any bearer token is accepted by a self-hosted server
        client = reactor_sdk.Reactor("helios", jwt="test-token", api_url=url)
    seen = Seen()
    client.on_message(seen.on_message)
    await client.connect()
    assert client.status == "ready"
    session_id = client.session_id
    client.track("main_video").on_frame(seen.on_frame)

    schema = await client.request_schema()
    assert "set_prompt" in schema["components"]["schemas"]

    reply = await client.send_command("set_prompt", {"prompt": PROMPT})
    assert reply["type"] == "prompt_accepted"
    assert reply["data"]["prompt"] == PROMPT
    reply = await client.send_command("schedule_prompt", {"prompt": LATER, "chunk": 2})
    assert reply["type"] == "prompt_accepted"
    reply = await client.send_command("start", {})
    assert reply["type"] == "generation_started"

    # Two chunks, their notifications, and frames of the served size (noise, not the black
    # placeholder the track sends before the first chunk).
    await seen.until(lambda: len(seen.chunks()) >= 2, "two chunk_complete notifications")
    first = seen.chunks()[:2]
    assert [int(c["chunk_index"]) for c in first] == [0, 1]
    assert all(int(c["frames_emitted"]) == 33 for c in first)
    assert first[0]["active_prompt"] == PROMPT
    await seen.until(lambda: len(_sizes(seen, SERVED)) >= 66, "66 frames of the served size")
    assert max(_sizes(seen, SERVED)) > 5, "only flat frames arrived"

    # The scheduled prompt takes over at its chunk.
    third = await seen.until(
        lambda: next((c for c in seen.chunks() if int(c["chunk_index"]) == 2), None), "chunk 2"
    )
    assert third["active_prompt"] == LATER

    # A rejected command: an error reply (not a timeout), and the session lives on.
    with pytest.raises(reactor_sdk.ReactorError) as rejected:
        await client.send_command("schedule_prompt", {"prompt": LATER, "chunk": 0})
    assert rejected.value.code == "chunk_already_generated"
    assert "schedule_prompt" in rejected.value.message
    with pytest.raises(reactor_sdk.ReactorError) as unknown:
        await client.send_command("warp_drive", {})
    assert unknown.value.code == "unknown_command"
    reply = await client.send_command("set_seed", {"seed": 7})
    assert reply is None or reply["type"] == "state"

    # An image through the client's upload path.
    ref = await client.upload_file(png_bytes(40, 24), name="ref.png", mime_type="image/png")
    reply = await client.send_command("set_image", {"image": ref})
    assert reply["type"] == "image_accepted"
    assert (int(reply["data"]["width"]), int(reply["data"]["height"])) == (40, 24)
    await seen.until(lambda: seen.of("image_accepted"), "image_accepted as a message")

    # Super-resolution 2x: frames twice the size from the next chunk.
    reply = await client.send_command("set_sr_scale", {"sr_scale": "2x"})
    assert reply is None or reply["type"] == "state"
    doubled = (SERVED[0] * 2, SERVED[1] * 2)
    await seen.until(lambda: len(_sizes(seen, doubled)) >= 10, "frames twice the size")

    # Pause: at most the chunk in flight completes; resume: chunks flow again.
    reply = await client.send_command("pause", {})
    assert reply["type"] == "generation_paused"
    at_pause = len(seen.chunks())
    await asyncio.sleep(10)
    after = len(seen.chunks())
    assert after <= at_pause + 1, f"{after - at_pause} chunks completed while paused"
    reply = await client.send_command("resume", {})
    assert reply["type"] == "generation_resumed"
    await seen.until(lambda: len(seen.chunks()) > after, "a chunk after resume")

    # reconnect(): a new peer re-offered on the same connection; the session and its stream
    # go on (the old peer's end does not close the session).
    await client.reconnect()
    assert client.status == "ready"
    assert client.session_id == session_id
    before, frames_before = len(seen.chunks()), len(seen.frames)
    reply = await client.send_command("set_prompt", {"prompt": PROMPT})
    assert reply["type"] == "prompt_accepted"
    await seen.until(lambda: len(seen.chunks()) > before, "a chunk after reconnect")
    await seen.until(lambda: len(seen.frames) > frames_before + 10, "frames after reconnect")

    await client.disconnect()
    client.close()
    await _slot_is_free(url, mode, session_id)


async def _slot_is_free(url: str, mode: str, session_id: str) -> None:
    """Within seconds of the disconnect, the only session slot can be taken again."""
    auth = {"Authorization": "Bearer test-token"}
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=10) as http:
        deadline = time.monotonic() + 10
        while True:
            if mode == "local":
                got = await http.post("/start_session", json={})
                if got.status_code == 200:
                    await http.post("/stop_session")
                    break
            else:
                gone = (await http.get(f"/sessions/{session_id}", headers=auth)).json()
                got = await http.post("/sessions", json={"model": {"name": "helios"}}, headers=auth)
                body = got.json()
                if gone["state"] == "CLOSED" and body["state"] == "ACTIVE":
                    await http.delete(f"/sessions/{body['session_id']}", headers=auth)
                    break
                await http.delete(f"/sessions/{body['session_id']}", headers=auth)
            assert time.monotonic() < deadline, f"the slot is still taken: {got.text}"
            await asyncio.sleep(0.25)


@pytest.mark.parametrize("mode", ["local", "coordinator"])
def test_reactor_sdk_drives_a_session(server_url: str, mode: str) -> None:
    asyncio.run(_session(server_url, mode))
