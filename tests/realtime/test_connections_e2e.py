"""The newer clients' flow end to end: registered connections, trickled ICE, the control channel,
the protobuf wire and its correlated replies, the JSON variant of JS SDK >= 2.12, and both client
generations at once. Real uvicorn, real aiortc peers on loopback, FakeEngine for speed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from google.protobuf.struct_pb2 import Struct
from tests.live_server import app_server
from tests.reactor_client import HEADERS, NewerClient, ReactorClient

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, Sessions, build_app
from helios_serve.compose.single import build_parts
from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.fake import FakeEngine, FakeEngineConfig
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.reactor import wire_pb
from helios_serve.realtime.reactor.proto import reactor_wire_pb2 as pb

from .conftest import np_upscale, png_bytes

CONFIG = RealtimeConfig(
    max_sessions=2,
    idle_timeout_s=2.0,
    watchdog_interval_s=0.2,
    emission_fps=60.0,
    width=64,
    height=64,
    settings=SamplingSettings(),
    max_upload_bytes=64 * 1024,
)
CREATE = {"model": {"name": "helios"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    engine = FakeEngine(FakeEngineConfig(step_delay_s=0.01))
    parts = build_parts(engine, tmp_path_factory.mktemp("rt-conn"))
    app = build_app(engine, jobs=JobApi(parts, ApiConfig()), sessions=Sessions(CONFIG, np_upscale))
    with app_server(app) as url:
        yield url
    parts.store.close()


def newer(url: str, body: Callable[[NewerClient], Awaitable[None]], wire: str = "protobuf") -> None:
    async def main() -> None:
        client = NewerClient(url, wire)
        await client.connect()
        try:
            await body(client)
        finally:
            await client.close()

    asyncio.run(main())


# ---------------------------------------------------------------------- HTTP


def test_connection_routes_refuse_what_they_cannot_serve(server: str) -> None:
    with httpx.Client(base_url=server, headers=HEADERS, timeout=10) as http:
        assert http.post("/sessions/nope/transport/webrtc/connections", json={}).status_code == 404
        assert http.get("/session").status_code == 404  # no local session yet
        sid = http.post("/start_session", json={}).json()["session_id"]
        assert http.get("/session").status_code == 404  # the id is the creator's alone
        assert http.get("/session", params={"session_id": sid}).json()["session_id"] == sid
        base = f"/sessions/{sid}/transport/webrtc"
        ids = [http.post(base + "/connections", json={}) for _ in range(8)]
        assert [r.status_code for r in ids] == [201] * 8
        assert len({r.json()["connection_id"] for r in ids}) == 8
        full = http.post(base + "/connections", json={})
        assert full.status_code == 503
        assert full.headers["retry-after"]
        cid = ids[0].json()["connection_id"]
        for path in (
            "/connections/999/sdp_params",
            "/connections/x/sdp_params",
            "/connections/0/sdp_params",
            "/connections/99999999999/sdp_params",
        ):
            assert http.get(base + path).status_code == 404, path
        assert http.post(base + "/connections/999/ice_candidates", json={}).status_code == 404
        assert http.get(base + f"/connections/{cid}/sdp_params").status_code == 202  # no offer yet
        ice = base + f"/connections/{cid}/ice_candidates"
        for bad in (
            {"candidates": "x"},
            {"candidates": [{"sdp_mid": "0"}]},
            {"candidates": [], "is_final": "yes"},
            {"candidates": [{"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host", "sdp_mid": 0}]},
            {"candidates": [{"candidate": "c"}] * 65},
        ):
            got = http.post(ice, json=bad)
            assert got.status_code == 400, bad
            assert got.json()["error"]["type"] == "invalid_request_error"
        assert http.post(ice, content=b"{not json").status_code == 400
        # Junk candidates before the offer are kept (and later ignored), never a 500.
        junk = {"candidates": [{"candidate": "candidate:garbage", "sdp_mline_index": 0}]}
        assert http.post(ice, json=junk).status_code == 202
        # A total cap per offer (issue 24): 128 candidates, then a clear 400.
        assert http.post(ice, json={"candidates": junk["candidates"] * 64}).status_code == 202
        assert http.post(ice, json={"candidates": junk["candidates"] * 63}).status_code == 202
        over = http.post(ice, json=junk)
        assert over.status_code == 400
        assert over.json()["error"]["code"] == "too_many_candidates"
        bad_offer = http.post(base + f"/connections/{cid}/sdp_params", json={"sdp_offer": ""})
        assert bad_offer.status_code == 400
        assert http.post("/stop_session").status_code == 200
        assert http.post(base + "/connections", json={}).status_code == 404
        # Coordinator mode: no slot yet (PENDING) is a 503 to retry, not a connection.
        a = http.post("/sessions", json=CREATE).json()
        b = http.post("/sessions", json=CREATE).json()
        c = http.post("/sessions", json=CREATE).json()
        assert c["state"] == "PENDING"
        pending = http.post(f"/sessions/{c['session_id']}/transport/webrtc/connections", json={})
        assert pending.status_code == 503
        for s in (a, b, c):
            http.delete(f"/sessions/{s['session_id']}")


def test_a_second_client_cannot_take_over_a_session(server: str) -> None:
    """Issue 24, finding 3: `GET /session` handed any origin the id, and with it anyone could
    register a connection, offer, and make their peer the live one. Now the id is the
    creator's secret: nothing lists it, and a stop without it ends only the caller's own."""

    async def body(c: NewerClient) -> None:
        sid = c.session["session_id"]
        evil = {**HEADERS, "Origin": "https://evil.example"}
        async with httpx.AsyncClient(base_url=server, headers=evil, timeout=10) as attacker:
            for path in ("/session", "/sessions"):
                got = await attacker.get(path)
                assert sid not in got.text, path
            guess = "0" * 32
            for path in (
                f"/sessions/{guess}/transport/webrtc/connections",
                f"/sessions/{guess}/uploads",
            ):
                assert (await attacker.post(path, json={})).status_code == 404, path
            # the 2.9 SDK's stop carries no id: from another page it stops nothing of ours
            stopped = await attacker.post("/stop_session")
            assert stopped.json() == {"stopped": []}
            assert (await attacker.get(f"/sessions/{sid}")).json()["state"] == "ACTIVE"
        c.ping()
        assert (await c.reply(c.command("set_prompt", {"prompt": "mine"})))["type"] == (
            "prompt_accepted"
        )

    newer(server, body)


# ---------------------------------------------------------------------- protobuf


def test_protobuf_commands_get_correlated_replies(server: str) -> None:
    async def body(c: NewerClient) -> None:
        await asyncio.sleep(0.5)
        assert c.data == [], "the server spoke before it knew the client's wire format"
        c.ping()
        state = await c.event("state")
        assert state["request_id"] == ""
        assert state["kind"] == pb.MESSAGE_KIND_NOTIFICATION
        assert state["data"]["started"] is False
        rid = c.command("set_prompt", {"prompt": "a cat"})
        reply = await c.reply(rid)
        assert reply["kind"] == pb.MESSAGE_KIND_RESPONSE
        assert (reply["type"], reply["data"]) == ("prompt_accepted", {"prompt": "a cat"})
        seed = await c.reply(c.command("set_seed", {"seed": 5}))
        assert seed["type"] == "state"
        assert seed["data"]["seed"] == 5
        assert (await c.reply(c.command("start")))["type"] == "generation_started"
        done = await c.event("chunk_complete")
        assert done["request_id"] == ""
        assert done["data"]["chunk_index"] == 0
        shown = await c.event("chunk_shown")  # its first frame went out: it can no longer change
        assert (shown["data"]["chunk_index"], shown["data"]["active_prompt"]) == (0, "a cat")
        # A rejected command: a correlated error carrying command and reason.
        err = await c.reply(c.command("schedule_prompt", {"prompt": "x", "chunk": 0}))
        assert err["error"]["code"] == "chunk_already_generated"
        assert err["error"]["message"].startswith("schedule_prompt: chunk_already_generated")
        err = await c.reply(c.command("warp", {}))
        assert err["error"]["code"] == "unknown_command"
        err = await c.reply(c.command("set_prompt", {"prompt": 7}))
        assert err["error"]["code"] == "invalid_field"
        assert not any(m["type"] == "command_error" for m in c.data), "errors doubled as events"
        # An image through an upload reference, numbers as protobuf doubles (sr_scale 2).
        store = (
            await c.http.post(
                f"/sessions/{c.session['session_id']}/uploads",
                json={"name": "a.png", "size": len(png_bytes()), "mime_type": "image/png"},
            )
        ).json()
        assert (await c.http.put(store["presigned_url"], content=png_bytes())).status_code == 200
        ref = {"upload_id": store["presigned_id"], "name": "a.png", "mime_type": "image/png"}
        image = await c.reply(c.command("set_image", {}, image=ref))
        assert image["type"] == "image_accepted"
        assert image["data"] == {"width": 32, "height": 24}
        assert (await c.reply(c.command("set_sr_scale", {"sr_scale": 2})))["type"] == "state"
        shapes: set[tuple[int, ...]] = set()
        for _ in range(400):
            shapes.add((await c.frame()).shape)
            if (128, 128, 3) in shapes:
                break
        assert (128, 128, 3) in shapes
        assert (await c.reply(c.command("pause")))["type"] == "generation_paused"
        assert (await c.reply(c.command("reset")))["type"] == "generation_reset"

    newer(server, body)


def test_junk_frames_are_answered_and_the_session_lives(server: str) -> None:
    async def body(c: NewerClient) -> None:
        c.ping()
        await c.event("state")
        c.send_data(b"\xff\xff\xff\xff garbage")
        junk = await c.event("command_error")
        assert junk["data"]["reason"].startswith("invalid_message")
        # A request that carries an error instead of a command: answered under its id.
        odd = pb.DataClientMessage(
            request_id="odd_1", kind=pb.MESSAGE_KIND_REQUEST, error=pb.Error(code="X")
        )
        c.send_data(odd.SerializeToString())
        assert (await c.reply("odd_1"))["error"]["code"] == "invalid_message"
        c.send_control(b"\xff\xfe junk on control")  # ignored, counted as liveness
        # A flood: every request still gets its own reply, the excess a rate_limited error.
        await asyncio.sleep(1.5)  # let the token bucket refill
        ids = [c.command("set_seed", {"seed": i}) for i in range(45)]
        replies = [await c.reply(rid) for rid in ids]
        limited = [r for r in replies if r["type"] == "error"]
        assert limited, "45 commands at once were not rate limited"
        assert all(r["error"]["code"] == "rate_limited" for r in limited)
        assert len(replies) - len(limited) >= 25
        await asyncio.sleep(1.5)
        assert (await c.reply(c.command("set_prompt", {"prompt": "alive"})))["type"] == (
            "prompt_accepted"
        )

    newer(server, body)


def _struct_command(request_id: str, name: str, data: Struct) -> bytes:
    command = pb.Command(type=name, data=data)
    return pb.DataClientMessage(
        request_id=request_id, kind=pb.MESSAGE_KIND_REQUEST, command=command
    ).SerializeToString()


def test_non_finite_numbers_and_every_junk_frame_leave_the_session_alive(server: str) -> None:
    """Issue 24, finding 8: NaN/±Infinity in a protobuf Struct killed the peer connection."""

    async def body(c: NewerClient) -> None:
        c.ping()
        await c.event("state")
        odd = [float("nan"), float("inf"), float("-inf")]
        for i, number in enumerate(odd):
            data = wire_pb.dict_to_struct({"seed": 1, "deep": {"list": [1, {"x": 0.0}]}})
            data["seed"] = number
            data["deep"]["list"][1]["x"] = number
            c.send_data(_struct_command(f"nonfinite_{i}", "set_seed", data))
        for i in range(len(odd)):
            err = await c.reply(f"nonfinite_{i}")
            assert err["error"]["code"] == "invalid_field", err
            assert "finite" in err["error"]["message"]
        for junk in (b"", b"\x00", b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256)), b"{" * 5000):
            c.send_data(junk)
            c.send_control(junk)
        for junk in ("", b"\xed\xa0\x80", "[]", "{", '{"scope": "runtime", "data": 7}', "NaN"):
            c.send_control(junk)
        await asyncio.sleep(1.5)  # the token bucket refills
        assert (await c.reply(c.command("set_prompt", {"prompt": "alive"})))["type"] == (
            "prompt_accepted"
        )

    newer(server, body)

    async def json_body(c: NewerClient) -> None:
        c.ping()
        await c.event("state")
        for junk in (
            '{"scope":"application","data":{"type":"set_seed","data":{"seed":NaN}}}',
            '{"scope":"application","data":{"type":"set_seed","data":{"seed":-Infinity}}}',
            "[" * 5000,
            b"\xed\xa0\x80",
            '{"scope": 7}',
            '{"scope":"runtime","data":{"type":"fileUploaded","data":[]}}',
            '{"scope":"application","data":{"type":"set_image","data":{},"uploads":{"image":7}}}',
        ):
            c.send_data(junk)
            c.send_control(junk)
        c.send_data(b"\xff\xfe not text")
        await asyncio.sleep(1.5)
        errors = [m for m in c.data if m["type"] == "command_error"]
        assert len(errors) >= 6, errors
        c.command("set_prompt", {"prompt": "alive"})
        assert (await c.event("prompt_accepted"))["data"] == {"prompt": "alive"}

    newer(server, json_body, wire="json")


def test_control_channel_requests(server: str) -> None:
    async def body(c: NewerClient) -> None:
        rid = c.control_request(request_schema=pb.RequestSchema())
        schema = await c.wait_control(lambda m: m.request_id == rid)
        assert schema.kind == pb.MESSAGE_KIND_RESPONSE
        doc = schema.model_schema.openapi
        assert doc["openapi"].startswith("3.")
        assert "schedule_prompt" in doc["components"]["schemas"]
        rid = c.control_request(publish_track=pb.PublishTrack(name="webcam"))
        refused = await c.wait_control(lambda m: m.request_id == rid)
        assert refused.WhichOneof("payload") == "error"
        assert refused.error.code == "PUBLISH_REFUSED"
        for payload in (
            {"request_clip": pb.RequestClip(duration_seconds=5)},
            {"request_recording": pb.RequestRecording()},
        ):
            rid = c.control_request(**payload)
            clip = await c.wait_control(lambda m, rid=rid: m.request_id == rid)
            assert clip.WhichOneof("payload") == "clip_failed"
            assert "not supported" in clip.clip_failed.reason

    newer(server, body)


def test_pause_track_holds_the_video_and_resume_track_restarts_it(server: str) -> None:
    async def body(c: NewerClient) -> None:
        c.ping()
        await c.frame()
        c.control_notify(pause_track=pb.PauseTrack(name="main_video"))
        await asyncio.sleep(0.3)
        while True:  # drain what was already in flight
            try:
                await c.frame(within=1.0)
            except TimeoutError:
                break
        c.control_notify(resume_track=pb.ResumeTrack(name="main_video"))
        await c.frame(within=5)
        c.control_notify(pause_track=pb.PauseTrack(name="no_such_track"))  # ignored
        await c.frame(within=5)

    newer(server, body)


def test_control_pings_alone_keep_the_session_alive(server: str) -> None:
    async def body(c: NewerClient) -> None:
        for _ in range(12):  # 3 s, past the 2 s ping timeout, with nothing on "data"
            c.ping()
            await asyncio.sleep(0.25)
        got = await c.http.get(f"/sessions/{c.session['session_id']}")
        assert got.json()["state"] == "ACTIVE"
        for transceiver in c.pc.getTransceivers():  # no RTCP either (it is a sign of life)
            await transceiver.receiver.stop()
        await asyncio.sleep(3)  # silence: the watchdog closes it
        got = await c.http.get(f"/sessions/{c.session['session_id']}")
        assert got.json()["state"] == "CLOSED"

    newer(server, body)


# ---------------------------------------------------------------------- JSON on the new flow


def test_json_client_on_the_connection_flow(server: str) -> None:
    """JS SDK >= 2.12: the connection flow, but JSON: the envelope on "data", and on "control"
    `{type: "notification", event}` track verbs and `{type: "request", method}` requests."""

    async def body(c: NewerClient) -> None:
        c.ping()  # a runtime ping on "data": the first frame is text, so the link speaks JSON
        assert (await c.event("state"))["data"]["started"] is False
        c.command("set_prompt", {"prompt": "a dog"})
        assert (await c.event("prompt_accepted"))["data"] == {"prompt": "a dog"}
        c.command("warp")
        assert (await c.event("command_error"))["data"]["reason"] == "unknown_command"
        request = {
            "type": "request",
            "method": "publish_track",
            "request_id": "ctrl_9",
            "data": {"name": "webcam"},
        }
        c.send_control(json.dumps(request))
        answer = await c.wait_control(lambda m: m.get("request_id") == "ctrl_9")
        assert answer["type"] == "response"
        assert answer["error"]["code"] == "PUBLISH_REFUSED"
        c.send_control(
            json.dumps(
                {"type": "notification", "event": "pause_track", "data": {"name": "main_video"}}
            )
        )
        c.send_control(
            json.dumps(
                {"type": "notification", "event": "resume_track", "data": {"name": "main_video"}}
            )
        )
        c.send_control("not json")  # ignored
        c.send_data(json.dumps({"scope": "runtime", "data": {"type": "requestSchema"}}))
        schema = await c.event("modelSchema")
        assert "set_prompt" in schema["data"]["components"]["schemas"]
        c.command("start")
        assert (await c.event("chunk_complete"))["data"]["chunk_index"] == 0
        await c.frame()

    newer(server, body, wire="json")


# ---------------------------------------------------------------------- both at once


def test_both_client_generations_at_once(server: str) -> None:
    async def main() -> None:
        old = ReactorClient(server)
        new = NewerClient(server)
        await old.connect()
        await new.connect()
        try:
            assert old.session_id != new.session["session_id"]
            new.ping()
            old.send("set_prompt", {"prompt": "old"})
            prompt = new.command("set_prompt", {"prompt": "new"})
            assert (await new.reply(prompt))["type"] == "prompt_accepted"
            old.send("start")
            assert (await new.reply(new.command("start")))["type"] == "generation_started"
            assert (await old.wait("chunk_complete"))["active_prompt"] == "old"
            new_done = await new.event("chunk_complete")
            assert new_done["data"]["active_prompt"] == "new"
            assert all(isinstance(e, dict) and "scope" in e for e in old.events)  # JSON only
            assert (await old.frame()).shape == (await new.frame()).shape == (64, 64, 3)
        finally:
            await old.close(stop=False)
            await new.close()  # stop_session ends every local session, the old client's too

    asyncio.run(main())


def test_a_close_that_hangs_still_answers_stop_session_and_frees_the_slot(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session whose teardown never finishes (seen rarely under load, cause not yet found)
    holds up `stop_session` for `CLOSE_TIMEOUT_S` at most; its slot is given back."""
    from helios_serve.realtime.reactor import registry
    from helios_serve.realtime.reactor.handle import SessionHandle

    real_close = SessionHandle.close

    async def hanging_close(self: SessionHandle, reason: str) -> None:
        await real_close(self, reason)
        await asyncio.Event().wait()  # as if a step of the teardown never returned

    monkeypatch.setattr(registry, "CLOSE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(SessionHandle, "close", hanging_close)

    async def main() -> None:
        for _ in range(CONFIG.max_sessions + 1):  # more starts than slots: each stop freed one
            client = NewerClient(server)
            await client.connect()
            await asyncio.wait_for(client.close(), 15)

    asyncio.run(main())
