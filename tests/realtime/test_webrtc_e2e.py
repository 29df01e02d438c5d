"""End to end: a real uvicorn server, real aiortc peers over loopback, FakeEngine for speed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from tests.live_server import app_server
from tests.reactor_client import ReactorClient

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
from helios_serve.realtime.config import RealtimeConfig

from .conftest import np_upscale

FPS = 60.0
CONFIG = RealtimeConfig(
    max_sessions=1,
    idle_timeout_s=2.0,
    watchdog_interval_s=0.2,
    emission_fps=FPS,
    width=64,
    height=64,
    settings=SamplingSettings(),
    max_upload_bytes=64 * 1024,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    engine = FakeEngine(FakeEngineConfig(step_delay_s=0.01))
    parts = build_parts(engine, tmp_path_factory.mktemp("rt-data"))
    app = build_app(engine, jobs=JobApi(parts, ApiConfig()), sessions=Sessions(CONFIG, np_upscale))
    with app_server(app) as url:
        yield url
    parts.store.close()


def session(url: str, body: Callable[[ReactorClient], Awaitable[None]]) -> None:
    async def main() -> None:
        client = ReactorClient(url)
        await client.connect()
        try:
            await body(client)
        finally:
            await client.close()

    asyncio.run(main())


def test_local_mode_streams_chunks_with_scheduled_prompt(server: str) -> None:
    async def body(c: ReactorClient) -> None:
        assert c.session["state"] == "ACTIVE"
        assert c.session["capabilities"]["tracks"] == [
            {"name": "main_video", "kind": "video", "direction": "recvonly"}
        ]
        assert c.session["capabilities"]["emission_fps"] == FPS
        first_state = await c.wait("state")
        assert first_state["started"] is False
        assert first_state["current_prompt"] is None
        c.send("set_prompt", {"prompt": "a red fox"})
        c.send("schedule_prompt", {"prompt": "the fox jumps", "chunk": 2})
        c.send("start")
        await c.wait("generation_started")
        # Fake frames ramp one grey level per frame: real, changing video must arrive.
        frames = await c.frames_until(
            lambda fs: len(fs) >= 99 and len({round(float(f.mean())) for f in fs}) >= 30
        )
        done = await c.wait("chunk_complete", lambda d: d["chunk_index"] == 2)
        assert done["active_prompt"] == "the fox jumps"
        assert c.of("chunk_complete")[0]["active_prompt"] == "a red fox"
        assert all(f.shape == (64, 64, 3) for f in frames)

    session(server, body)


def _spread(frames: list[Any]) -> float:
    means = [float(f.mean()) for f in frames]
    return max(means) - min(means)


def test_pause_stops_frames_and_resume_continues(server: str) -> None:
    async def body(c: ReactorClient) -> None:
        c.send("set_prompt", {"prompt": "waves"})
        c.send("start")
        await c.wait("chunk_complete", lambda d: d["chunk_index"] == 0)
        c.send("pause")
        await c.wait("generation_paused")
        # Buffered chunks play out (at most 2 + the one in flight), then the last frame repeats:
        # within the timeout, 30 frames in a row must stay the same.
        await c.frames_until(lambda fs: len(fs) >= 30 and _spread(fs[-30:]) < 1.0)
        count = len(c.of("chunk_complete"))
        assert count <= 4, "generation went on after pause"
        await asyncio.sleep(1.0)  # the fake engine makes a chunk in milliseconds: none may come
        assert len(c.of("chunk_complete")) == count
        c.send("resume")
        await c.wait("chunk_complete", lambda d: d["chunk_index"] == count)
        await c.frames_until(lambda fs: len(fs) >= 2 and _spread(fs) > 2.0)

    session(server, body)


def test_sr_upload_image_and_reset(server: str) -> None:
    async def body(c: ReactorClient) -> None:
        from .conftest import png_bytes

        png = png_bytes(40, 30)
        reserved = await c.http.post(
            f"/sessions/{c.session_id}/uploads",
            json={"name": "ref.png", "size": len(png), "mime_type": "image/png"},
        )
        assert reserved.status_code == 200
        ref = reserved.json()
        assert ref["presigned_url"].startswith(server + "/")
        put = await c.http.put(ref["presigned_url"], content=png)
        assert put.status_code == 200, put.text
        file_ref = {"upload_id": ref["presigned_id"], "name": "ref.png", "mime_type": "image/png"}
        c.send_raw('{"scope":"runtime","data":{"type":"fileUploaded","data":{"upload_id":"x"}}}')
        c.send("set_image", {}, uploads={"image": file_ref})
        assert await c.wait("image_accepted") == {"width": 40, "height": 30}
        ready = await c.wait("conditions_ready", lambda d: d["has_image"])
        assert ready == {"has_prompt": False, "has_image": True}
        c.send("set_prompt", {"prompt": "a fox"})
        c.send("start")
        await c.wait("chunk_complete", lambda d: d["chunk_index"] == 0)
        c.send("set_sr_scale", {"sr_scale": "2x"})
        for _ in range(400):
            if (await c.frame()).shape == (128, 128, 3):
                break
        else:
            pytest.fail("no 2x frames arrived")
        c.send("reset")
        await c.wait("generation_reset")
        await c.wait("state", lambda d: not d["started"] and not d["image_set"])

    session(server, body)


def test_bad_uploads(server: str) -> None:
    async def body(c: ReactorClient) -> None:
        text = b"just some text, not an image"
        url = f"/sessions/{c.session_id}/uploads"
        ref = (await c.http.post(url, json={"name": "a.png", "size": len(text)})).json()
        assert (await c.http.put(ref["presigned_url"], content=text)).status_code == 200
        c.send("set_image", {}, uploads={"image": {"upload_id": ref["presigned_id"]}})
        err = await c.wait("command_error")
        assert err["command"] == "set_image"
        assert "invalid_image" in err["reason"]
        assert (await c.http.put(ref["presigned_url"], content=text + b"!")).status_code == 400
        big = await c.http.post(url, json={"name": "b", "size": CONFIG.max_upload_bytes + 1})
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "file_too_large"
        small = (await c.http.post(url, json={"name": "c", "size": 10})).json()
        over = await c.http.put(
            small["presigned_url"], content=b"x" * (CONFIG.max_upload_bytes + 1)
        )
        assert over.status_code == 413
        preflight = await c.http.options(
            small["presigned_url"],
            headers={
                "Origin": "http://example.com",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] in ("*", "http://example.com")
        assert "PUT" in preflight.headers["access-control-allow-methods"]

    session(server, body)


def test_junk_on_the_channel_gets_command_errors(server: str) -> None:
    async def body(c: ReactorClient) -> None:
        # The server advertises a 256 KiB SCTP limit; lift the client's check to send 1 MB anyway.
        c.pc.sctp._remote_max_message_size = 0
        junk = [
            "not json",
            '{"scope":"application","data":{"type":"warp_drive","data":{}}}',
            '{"scope":"application","data":{"type":"schedule_prompt","data":{"prompt":"p"}}}',
            '{"scope":"application","data":{"type":"set_seed","data":{"seed":"many"}}}',
            "x" * (1024 * 1024),
        ]
        for message in junk:
            c.send_raw(message)
        await c.wait("command_error", lambda d: "message_too_large" in d["reason"], within=20)
        reasons = [e["reason"].split(":")[0] for e in c.of("command_error")]
        assert reasons == [
            "invalid_json",
            "unknown_command",
            "missing_field",
            "invalid_field",
            "message_too_large",
        ]
        c.send("set_prompt", {"prompt": "still alive"})
        await c.wait("prompt_accepted")

    session(server, body)


def test_disconnect_frees_the_slot_and_busy_gets_503(server: str) -> None:
    async def main() -> None:
        first = ReactorClient(server)
        await first.connect()
        busy = await first.http.post("/start_session", json={})
        assert busy.status_code == 503
        assert busy.headers["retry-after"]
        assert busy.json()["error"]["code"] == "session_limit_reached"
        await first.close(stop=False)  # pc.close() only, like a closed tab
        second = ReactorClient(server)
        for _ in range(50):
            probe = await second.http.post("/start_session", json={})
            if probe.status_code == 200:
                await second.http.post("/stop_session")
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the slot was not freed within 5 s")
        await second.close(stop=False)

    asyncio.run(main())


def test_a_silent_client_closes_the_session(server: str) -> None:
    """A client that receives video but never pings stays (its RTCP is a sign of life); once it
    sends nothing at all (its receiver stopped; the channels stay open), it is closed at the
    idle timeout."""

    async def main() -> None:
        client = ReactorClient(server, ping_every_s=None)
        await client.connect()
        await client.wait("state")
        await asyncio.sleep(3 * CONFIG.idle_timeout_s)  # receiving video: RTCP says it is there
        got = await client.http.get(f"/sessions/{client.session_id}")
        assert got.json()["state"] == "ACTIVE"
        for transceiver in client.pc.getTransceivers():
            await transceiver.receiver.stop()
        for _ in range(60):
            got = await client.http.get(f"/sessions/{client.session_id}")
            if got.json()["state"] == "CLOSED":
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the session outlived its ping timeout")
        await client.close()

    asyncio.run(main())
