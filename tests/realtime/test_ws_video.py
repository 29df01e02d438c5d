"""`WS /v1/realtime/video` (vLLM-Omni's streaming protocol) with FakeEngine over TestClient."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from helios_serve.compose.app import Sessions, build_app
from helios_serve.core import framecode
from helios_serve.engine.fake import FAIL_MARKER, FakeEngine, FakeEngineConfig
from helios_serve.engine.paced import PacedEngine, PacedTiming
from helios_serve.media.fmp4 import FragmentedMp4Encoder
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.ws.endpoint import PATH

from .conftest import np_upscale

START = {"type": "session.start", "model": "fake", "prompt": "a red fox", "seed": 5}


def make_client(step_delay_s: float = 0.0, engine: FakeEngine | None = None) -> TestClient:
    engine = engine or FakeEngine(FakeEngineConfig(step_delay_s=step_delay_s))
    app = build_app(engine, sessions=Sessions(RealtimeConfig(max_sessions=1), np_upscale))
    return TestClient(app)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client() as c:
        yield c


@pytest.fixture
def slow_client() -> Iterator[TestClient]:
    with make_client(step_delay_s=0.03) as c:  # about 0.1 s a chunk
        yield c


def fake_level(prompt: str, seed: int, chunk: int) -> int:
    """The grey level of FakeEngine's first frame of `chunk` (see engine/fake.py)."""
    return int((zlib.crc32(f"{prompt}|{seed}".encode()) % 200 + chunk * 7) % 256)


def decode(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def collect(ws: WebSocketTestSession) -> tuple[list[dict[str, Any]], bytes, dict[str, Any]]:
    """Read chunks until session.done: (chunk metadata, all bytes, the done message)."""
    metas: list[dict[str, Any]] = []
    data = b""
    while True:
        msg = ws.receive_json()
        if msg["type"] == "session.done":
            return metas, data, msg
        if msg["type"] != "video.chunk_metadata":
            continue  # pongs and acks interleave freely
        payload = ws.receive_bytes()  # the binary frame right after its metadata
        assert len(payload) == msg["byte_length"]
        metas.append(msg)
        data += payload


def expect_error(ws: WebSocketTestSession, code: str) -> dict[str, Any]:
    msg = ws.receive_json()
    assert msg["type"] == "error", msg
    assert msg["code"] == code, msg
    return msg


def test_streams_chunks_as_one_decodable_fmp4(client: TestClient) -> None:
    with client.websocket_connect(PATH) as ws:
        ws.send_json(START | {"num_frames": 99, "format": "m4s"})
        start = ws.receive_json()
        assert start["type"] == "video.start"
        assert start["format"] == "m4s"
        config = start["config"]
        assert (config["width"], config["height"], config["fps"]) == (64, 64, 24)
        assert (config["num_frames"], config["num_chunks"], config["seed"]) == (99, 3, 5)
        metas, data, done = collect(ws)
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()  # closed after session.done
    assert done == {
        "type": "session.done",
        "request_id": start["request_id"],
        "chunks": 3,
        "stopped": False,
    }
    assert [m["transport_chunk_index"] for m in metas] == [0, 1, 2]
    assert [m["generation_chunk_index"] for m in metas] == [0, 1, 2]
    assert all(m["kind"] == "media" and m["num_frames"] == 33 for m in metas)
    assert data[4:8] == b"ftyp"
    frames = decode(data)
    assert len(frames) == 99
    assert frames[0].shape == (64, 64, 3)
    for chunk in range(3):
        level = fake_level("a red fox", 5, chunk)
        assert abs(float(frames[chunk * 33].mean()) - level) < 4
    # Remuxing (what a client does to save the stream) keeps every frame.
    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as src, av.open(out, "w", format="mp4") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    assert len(decode(out.getvalue())) == 99


def test_each_chunk_is_decodable_as_soon_as_it_is_sent() -> None:
    # Not one chunk late: the bytes handed out after k chunks hold all 33 * k frames.
    encoder = FragmentedMp4Encoder(64, 32, fps=16)
    data = b""
    for k in range(3):
        piece = encoder.encode(np.full((33, 32, 64, 3), 40 * k, np.uint8))
        assert piece[4:8] == (b"ftyp" if k == 0 else b"moof")
        data += piece
        frames = decode(data)
        assert len(frames) == 33 * (k + 1)
    with av.open(io.BytesIO(data)) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    assert times == pytest.approx([i / 16 for i in range(99)])


def test_interaction_applies_at_the_first_chunk_not_sent(slow_client: TestClient) -> None:
    with slow_client.websocket_connect(PATH) as ws:
        ws.send_json(START | {"num_frames": 33 * 5})
        assert ws.receive_json()["type"] == "video.start"
        ws.send_json(
            {
                "type": "session.interaction",
                "interaction": {
                    "event_id": "ev-1",
                    "event": {"prompt": "a blue whale"},
                    "transition_chunks": 2,
                },
            }
        )
        metas, data, done = collect(ws)
    assert done["chunks"] == 5
    assert not done["stopped"]
    first = next(i for i, m in enumerate(metas) if m["started_event_ids"] == ["ev-1"])
    # Chunk 0 was being made when the prompt arrived: it is remade with it, unless it was sent
    # first (a slow machine), and then the next one takes it.
    assert first in (0, 1)
    assert [m["active_event_ids"] for m in metas[first : first + 3]] == [["ev-1"], ["ev-1"], []]
    assert metas[first + 1]["completed_event_ids"] == ["ev-1"]
    frames = decode(data)
    for chunk in range(5):
        prompt = "a red fox" if chunk < first else "a blue whale"
        assert abs(float(frames[chunk * 33].mean()) - fake_level(prompt, 5, chunk)) < 4


def test_interaction_is_acknowledged_and_checked(slow_client: TestClient) -> None:
    with slow_client.websocket_connect(PATH) as ws:
        ws.send_json(START | {"num_frames": 66})
        request_id = ws.receive_json()["request_id"]
        event = {"event": {"prompt": "a blue whale"}}
        ws.send_json({"type": "session.interaction", "interaction": event | {"event_id": "a"}})
        ws.send_json({"type": "session.interaction", "interaction": event | {"event_id": "a"}})
        ws.send_json({"type": "session.interaction", "interaction": {"event": {}}})
        ws.send_json({"type": "session.interaction", "interaction": event})  # id generated
        ws.send_json({"type": "session.ping"})
        replies = [ws.receive_json() for _ in range(5)]
        replies = [r for r in replies if r["type"] != "video.chunk_metadata"]
        assert replies[0] == {
            "type": "session.interaction.queued",
            "request_id": request_id,
            "event_id": "a",
        }
        assert [r.get("code") for r in replies[1:3]] == ["event_id_conflict", "invalid_interaction"]
        # the conflict names what a client needs to match it to the interaction it sent
        assert (replies[1]["request_id"], replies[1]["event_id"]) == (request_id, "a")
        assert replies[3]["type"] == "session.interaction.queued"
        assert replies[3]["event_id"]
        ws.send_json({"type": "session.stop"})  # TestClient cancels a still-running app on exit
        collect(ws)


def test_ping_pong_and_bad_messages_keep_the_session(client: TestClient) -> None:
    with client.websocket_connect(PATH) as ws:
        ws.send_json({"type": "session.ping"})
        assert ws.receive_json() == {"type": "session.pong"}
        ws.send_json(START | {"num_frames": 33})
        assert ws.receive_json()["type"] == "video.start"
        ws.send_text("{not json")
        ws.send_json({"type": "session.dance"})
        ws.send_json({"type": "session.ping"})
        seen: list[dict[str, Any]] = []
        while (msg := ws.receive_json())["type"] != "session.done":
            seen.append(msg)
            if msg["type"] == "video.chunk_metadata":
                ws.receive_bytes()
        assert msg["chunks"] == 1
        kinds = [m.get("code", m["type"]) for m in seen if m["type"] != "video.chunk_metadata"]
        assert kinds == ["invalid_json", "invalid_type", "session.pong"]


def test_stop_mid_stream_ends_with_stopped_and_frees_the_slot(slow_client: TestClient) -> None:
    with slow_client.websocket_connect(PATH) as ws:
        ws.send_json(START | {"num_frames": 33 * 50})
        assert ws.receive_json()["type"] == "video.start"
        assert ws.receive_json()["type"] == "video.chunk_metadata"
        ws.receive_bytes()
        ws.send_json({"type": "session.stop"})
        metas, _, done = collect(ws)
    assert done["stopped"] is True
    assert 1 <= done["chunks"] < 10
    assert done["chunks"] == len(metas) + 1
    with slow_client.websocket_connect(PATH) as ws:  # max_sessions=1: the slot came back
        ws.send_json(START | {"num_frames": 33})
        assert ws.receive_json()["type"] == "video.start"


def test_second_session_over_the_limit_is_busy(slow_client: TestClient) -> None:
    with slow_client.websocket_connect(PATH) as first:
        first.send_json(START | {"num_frames": 33 * 50})
        assert first.receive_json()["type"] == "video.start"
        with slow_client.websocket_connect(PATH) as second:
            second.send_json(START)
            assert "in use" in expect_error(second, "busy")["message"]
            with pytest.raises(WebSocketDisconnect):
                second.receive_json()
        slots = slow_client.app.state.slots  # type: ignore[attr-defined]
        assert slots.in_use == 1  # the same slots as WebRTC sessions
        first.send_json({"type": "session.stop"})
        assert collect(first)[2]["stopped"] is True
    assert slots.in_use == 0


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{oops", "invalid_json"),
        ('["session.start"]', "invalid_json"),
        ('{"type": "session.interaction"}', "invalid_type"),
        ({"width": 50}, "invalid_size"),
        ({"height": 32}, "invalid_size"),
        ({"extra_params": {"warp_speed": 9}}, "unknown_parameter"),
        ({"extra_params": {"pyramid_num_inference_steps_list": [1, 1]}}, "invalid_parameter"),
        ({"extra_params": {"use_zero_init": "yes"}}, "invalid_parameter"),
        ({"temperature": 0.7}, "unknown_parameter"),
        ({"model": "wan-2.1"}, "model_not_found"),
        ({"format": "mp4"}, "unsupported_format"),
        ({"num_frames": 0}, "invalid_parameter"),
        ({"prompt": ""}, "invalid_parameter"),
    ],
)
def test_invalid_start_is_an_error_and_the_server_keeps_serving(
    client: TestClient, message: str | dict[str, Any], code: str
) -> None:
    with client.websocket_connect(PATH) as ws:
        ws.send_text(message) if isinstance(message, str) else ws.send_json(START | message)
        expect_error(ws, code)
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
    with client.websocket_connect(PATH) as ws:
        ws.send_json(START | {"num_frames": 33, "width": 128, "height": 64})
        config = ws.receive_json()["config"]
        assert (config["width"], config["height"]) == (128, 64)
        _, data, _ = collect(ws)
    assert decode(data)[0].shape == (64, 128, 3)


def test_settings_reach_the_engine() -> None:
    engine = FakeEngine()
    with make_client(engine=engine) as client, client.websocket_connect(PATH) as ws:
        extra = {"pyramid_num_inference_steps_list": [1, 2, 3], "use_zero_init": False}
        ws.send_json(START | {"extra_params": extra, "guidance_scale": 2.0, "num_frames": 33})
        config = ws.receive_json()["config"]
        assert config["extra_params"] == extra
        assert config["guidance_scale"] == 2.0
        collect(ws)
    request = engine.opened[0]
    assert (request.prompt, request.seed, request.width, request.height) == ("a red fox", 5, 64, 64)
    settings = request.settings
    assert settings.pyramid_steps == (1, 2, 3)
    assert settings.use_zero_init is False
    assert settings.guidance_scale == 2.0
    assert settings.max_sequence_length == engine.info.default_max_sequence_length


def test_generation_failure_is_reported(client: TestClient) -> None:
    with client.websocket_connect(PATH) as ws:
        ws.send_json(START | {"prompt": f"boom {FAIL_MARKER}", "num_frames": 99})
        assert ws.receive_json()["type"] == "video.start"
        assert ws.receive_json()["type"] == "video.chunk_metadata"
        ws.receive_bytes()
        message = expect_error(ws, "generation_failed")["message"]
        assert "internal_error" in message
        assert "injected" not in message  # exception text stays in the log


def test_vllm_omni_client_start_payload_is_accepted() -> None:
    """The fields vLLM-Omni's streaming_video_client.py sends (size and seconds included)."""
    from helios_serve.engine.fake import FakeEngineConfig
    from helios_serve.realtime.ws.start import plan_session

    info = FakeEngineConfig().info
    payload = {
        "type": "session.start",
        "model": info.name,
        "prompt": "fish on a reef",
        "size": "128x64",
        "seconds": "2",
        "fps": 16,
        "guidance_scale": 1.0,
        "seed": 42,
        "extra_params": {"pyramid_num_inference_steps_list": [1, 1, 1]},
    }
    plan = plan_session(payload, info)
    assert (plan.request.width, plan.request.height) == (128, 64)
    assert plan.chunks == 1  # 2 s at 16 fps = 32 frames: one 33-frame chunk
    assert plan.fps == 16


def test_an_interaction_lands_on_the_first_chunk_not_sent_and_only_once() -> None:
    """With the paced test engine the frames say which chunk and prompt they are: the chunks
    made but not yet sent when an interaction came are remade, and none is sent twice."""
    engine = PacedEngine(PacedTiming(0.05, steps=3, open_s=0.0))
    config = RealtimeConfig(max_sessions=1, ws_send_ahead_s=0.1)
    app = build_app(engine, sessions=Sessions(config, np_upscale))
    first, later = "a red fox", "a blue whale"
    start = {"type": "session.start", "model": "paced", "prompt": first, "seed": 5, "fps": 60}
    with TestClient(app) as client, client.websocket_connect(PATH) as ws:
        ws.send_json(start | {"num_frames": 33 * 6})  # a chunk plays for 0.55 s
        assert ws.receive_json()["type"] == "video.start"
        metas, data = [], b""
        while len(metas) < 2:
            msg = ws.receive_json()
            if msg["type"] == "video.chunk_metadata":
                metas.append(msg)
                data += ws.receive_bytes()
        interaction = {"event_id": "ev-1", "event": {"prompt": later}, "transition_chunks": 1}
        ws.send_json({"type": "session.interaction", "interaction": interaction})
        rest, tail, done = collect(ws)
    metas += rest
    assert done["chunks"] == 6
    assert [m["generation_chunk_index"] for m in metas] == list(range(6))  # none sent twice
    codes = [framecode.read(f) for f in decode(data + tail)]
    assert all(c is not None for c in codes)
    chunks = [codes[i : i + 33] for i in range(0, len(codes), 33)]
    for index, frames in enumerate(chunks):
        assert [(c.chunk, c.frame) for c in frames if c] == [(index, i) for i in range(33)]
        assert len({c.tag for c in frames if c}) == 1
    tags = [frames[0].tag for frames in chunks if frames[0]]
    landing = tags.index(framecode.prompt_tag(later))
    # chunks 0 and 1 were sent; 2 (made and waiting, or being made) is remade with the new
    # prompt, unless it went out while the interaction was on its way
    assert landing in (2, 3)
    assert tags == [framecode.prompt_tag(first)] * landing + [framecode.prompt_tag(later)] * (
        6 - landing
    )
    assert metas[landing]["started_event_ids"] == ["ev-1"]
    assert all(m["started_event_ids"] == [] for i, m in enumerate(metas) if i != landing)
