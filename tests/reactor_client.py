"""The one Reactor test client, in both client generations, over real aiortc peers.

- `ReactorClient` stands in for @reactor-team/js-sdk 2.9.0 (local mode): start_session, a
  recvonly video transceiver and a "data" channel, a non-trickle offer to sdp_params (202),
  polling for the answer, then commands and events in the nested envelope, with a runtime ping
  every `ping_every_s`.
- `NewerClient` stands in for the newer clients' transport (reactor-sdk 1.x, JS SDK >= 2.12),
  with raw access to both channels so tests can send what the real clients never would:
  start_session, register a connection, trickle the offer's candidates (before the offer, as
  reactor-sdk 1.x does), an offer without candidates, poll the answer; "control" and "data"
  channels. `wire="protobuf"` speaks reactor_wire.v1; `wire="json"` speaks the JS SDK >= 2.12's
  JSON (the envelope on "data", `{type, event|method, ...}` on "control").

Both receive video the same way (`VideoReceiver`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection, RTCSessionDescription

from helios_bench.realtime_client import split_candidates
from helios_serve.realtime.reactor import wire_pb
from helios_serve.realtime.reactor.proto import reactor_wire_pb2 as pb

HEADERS = {"Reactor-API-Version": "1", "Reactor-API-Accept-Version": "1"}
TRANSPORT_HEADERS = {**HEADERS, "Reactor-WebRTC-Version": "1.0", "Authorization": "Bearer local"}


Message = dict[str, Any]
REACTOR_ATTRIBUTES = (
    "a=x-reactor-frame-metadata:1\r\na=x-reactor-dc-chunking:1 max-message-size=67108864\r\n"
)


class VideoReceiver:
    """The peer's video track: whichever client generation negotiated it."""

    _track: Any = None

    def _on_track(self, track: Any) -> None:
        if track.kind == "video":
            self._track = track

    async def frame(self, within: float = 10) -> npt.NDArray[np.uint8]:
        assert self._track is not None, "the answer carried no video track"
        video = await asyncio.wait_for(self._track.recv(), within)
        return np.asarray(video.to_ndarray(format="rgb24"))


class ReactorClient(VideoReceiver):
    def __init__(self, base_url: str, ping_every_s: float | None = 0.5) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=20)
        self.pc = RTCPeerConnection()
        self.events: list[dict[str, Any]] = []
        self.session: dict[str, Any] = {}
        self._ping_every_s = ping_every_s
        self._channel: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._new_event = asyncio.Event()

    @property
    def session_id(self) -> str:
        return str(self.session["session_id"])

    async def connect(self) -> None:
        response = await self.http.post("/start_session", json={})
        assert response.status_code == 200, response.text
        self.session = response.json()
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        channel = self.pc.createDataChannel("data")
        self._channel = channel
        opened = asyncio.Event()
        channel.on("open", opened.set)
        channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {
            "sdp_offer": self.pc.localDescription.sdp,
            "client_info": {"sdk_version": "2.9.0", "sdk_type": "python-test"},
            "track_mapping": [
                {
                    "mid": transceiver.mid,
                    "name": "main_video",
                    "kind": "video",
                    "direction": "recvonly",
                }
            ],
        }
        base = f"/sessions/{self.session_id}/transport/webrtc"
        ice = await self.http.get(base + "/ice_servers", headers=TRANSPORT_HEADERS)
        assert ice.status_code == 200
        posted = await self.http.post(base + "/sdp_params", json=body, headers=TRANSPORT_HEADERS)
        assert posted.status_code == 202, posted.text
        answer = await self._poll_answer(base)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(opened.wait(), 10)
        if self._ping_every_s:
            self._tasks.append(asyncio.create_task(self._ping()))

    async def _poll_answer(self, base: str) -> str:
        for _ in range(60):  # the SDK gives up after 6 polls of ~1 s; loopback answers faster
            got = await self.http.get(base + "/sdp_params", headers=TRANSPORT_HEADERS)
            if got.status_code == 200:
                return str(got.json()["sdp_answer"])
            assert got.status_code == 202, got.text
            await asyncio.sleep(0.1)
        raise TimeoutError("no SDP answer")

    def _on_message(self, message: str | bytes) -> None:
        self.events.append(json.loads(message))
        self._new_event.set()

    async def _ping(self) -> None:
        while True:
            self.send_raw(json.dumps({"scope": "runtime", "data": {"type": "ping", "data": {}}}))
            await asyncio.sleep(self._ping_every_s or 1)

    def send_raw(self, text: str) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(text)

    def send(self, name: str, data: dict[str, Any] | None = None, **extra: Any) -> None:
        inner = {"type": name, "data": data or {}, **extra}
        self.send_raw(json.dumps({"scope": "application", "data": inner}))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [
            e["data"]["data"]
            for e in self.events
            if e.get("scope") == "application" and e["data"]["type"] == name
        ]

    async def wait(self, name: str, pred: Any = None, within: float = 15) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for data in self.of(name):
                    if pred is None or pred(data):
                        return data
                self._new_event.clear()
                await self._new_event.wait()

        return await asyncio.wait_for(find(), within)

    async def frames_for(self, seconds: float) -> list[npt.NDArray[np.uint8]]:
        out = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            out.append(await self.frame())
        return out

    async def frames_until(self, done: Any, within: float = 30) -> list[npt.NDArray[np.uint8]]:
        """Receive frames until `done(frames)` holds; count-based, so a loaded machine that
        delivers frames late still passes, and a stream that never gets there fails."""
        out: list[npt.NDArray[np.uint8]] = []
        end = time.monotonic() + within
        while not done(out):
            assert time.monotonic() < end, f"condition not reached after {len(out)} frames"
            out.append(await self.frame())
        return out

    async def close(self, stop: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        if stop:
            await self.http.post("/stop_session")
        await self.http.aclose()


class NewerClient(VideoReceiver):
    def __init__(self, base_url: str, wire: str = "protobuf") -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=20)
        self.pc = RTCPeerConnection()
        self.wire = wire
        self.session: dict[str, Any] = {}
        self.connection_id = 0
        self.data: list[Message] = []
        """Decoded data-channel frames: `{request_id, kind, type, data}` or `{..., error}`."""
        self.control: list[Any] = []
        self.channels: dict[str, Any] = {}
        self._changed = asyncio.Event()
        self._requests = 0

    @property
    def base(self) -> str:
        return f"/sessions/{self.session['session_id']}/transport/webrtc"

    @property
    def connection(self) -> str:
        return f"{self.base}/connections/{self.connection_id}"

    async def connect(self) -> None:
        response = await self.http.post("/start_session", json={})
        assert response.status_code == 200, response.text
        self.session = response.json()
        opened = [asyncio.Event(), asyncio.Event()]
        for label, event in zip(("control", "data"), opened, strict=True):
            channel = self.pc.createDataChannel(label)
            channel.on("open", event.set)
            channel.on("message", lambda m, label=label: self._on_message(label, m))
            self.channels[label] = channel
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp, candidates = split_candidates(self.pc.localDescription.sdp)
        # The session attributes reactor-sdk 1.13's libwebrtc offer carries; unknown to aiortc.
        head, sep, rest = sdp.partition("m=")
        sdp = head + REACTOR_ATTRIBUTES + sep + rest
        registered = await self.http.post(self.base + "/connections", json={})
        assert registered.status_code == 201, registered.text
        self.connection_id = registered.json()["connection_id"]
        trickle = {"candidates": candidates[:1], "is_final": False}
        got = await self.http.post(self.connection + "/ice_candidates", json=trickle)
        assert got.status_code == 202, got.text
        body = {
            "sdp_offer": sdp,
            "client_info": {"sdk_version": "1.13.0", "sdk_type": "python-test"},
            "track_mapping": [
                {
                    "mid": transceiver.mid,
                    "name": "main_video",
                    "kind": "video",
                    "direction": "recvonly",
                }
            ],
        }
        posted = await self.http.post(
            self.connection + "/sdp_params", json=body, headers=TRANSPORT_HEADERS
        )
        assert posted.status_code == 202, posted.text
        # The rest of the candidates after the offer, and the end of gathering.
        trickle = {"candidates": candidates[1:], "is_final": True}
        got = await self.http.post(self.connection + "/ice_candidates", json=trickle)
        assert got.status_code == 202, got.text
        answer = await self._poll_answer()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 15)

    async def _poll_answer(self) -> str:
        for _ in range(100):
            got = await self.http.get(self.connection + "/sdp_params")
            if got.status_code == 200:
                assert got.json()["connection_id"] == self.connection_id
                return str(got.json()["sdp_answer"])
            assert got.status_code == 202, got.text
            await asyncio.sleep(0.1)
        raise TimeoutError("no SDP answer")

    def _on_message(self, label: str, message: str | bytes) -> None:
        if label == "control":
            self.control.append(self._decode_control(message))
        else:
            self.data.append(self._decode_data(message))
        self._changed.set()

    def _decode_data(self, message: str | bytes) -> Message:
        if self.wire == "json":
            doc = json.loads(message)
            return {"request_id": "", "type": doc["data"]["type"], "data": doc["data"]["data"]}
        assert isinstance(message, bytes), "a protobuf client got a text frame"
        frame = pb.DataServerMessage()
        frame.ParseFromString(message)
        out: Message = {"request_id": frame.request_id, "kind": frame.kind}
        which = frame.WhichOneof("payload")
        if which == "message":
            out.update(type=frame.message.type, data=wire_pb.struct_to_dict(frame.message.data))
        elif which == "error":
            out.update(
                type="error", error={"code": frame.error.code, "message": frame.error.message}
            )
        else:
            out.update(type="ack")
        return out

    def _decode_control(self, message: str | bytes) -> Any:
        if self.wire == "json":
            return json.loads(message)
        frame = pb.ControlServerMessage()
        frame.ParseFromString(message if isinstance(message, bytes) else message.encode())
        return frame

    # ------------------------------------------------------------------ sending
    def send_data(self, frame: str | bytes) -> None:
        self.channels["data"].send(frame)

    def send_control(self, frame: str | bytes) -> None:
        self.channels["control"].send(frame)

    def command(self, name: str, data: dict[str, Any] | None = None, **uploads: Any) -> str:
        """Send a command; its request id (protobuf) or "" (JSON, uncorrelated)."""
        if self.wire == "json":
            inner: dict[str, Any] = {"type": name, "data": data or {}}
            if uploads:
                inner["uploads"] = uploads
            self.send_data(json.dumps({"scope": "application", "data": inner}))
            return ""
        self._requests += 1
        request_id = f"data_{self._requests}"
        command = pb.Command(type=name, data=wire_pb.dict_to_struct(data or {}))
        for param, ref in uploads.items():
            command.uploads[param].CopyFrom(pb.UploadReference(**ref))
        message = pb.DataClientMessage(
            request_id=request_id, kind=pb.MESSAGE_KIND_REQUEST, command=command
        )
        self.send_data(message.SerializeToString())
        return request_id

    def control_request(self, **payload: Any) -> str:
        self._requests += 1
        request_id = f"ctrl_{self._requests}"
        message = pb.ControlClientMessage(
            request_id=request_id, kind=pb.MESSAGE_KIND_REQUEST, **payload
        )
        self.send_control(message.SerializeToString())
        return request_id

    def control_notify(self, **payload: Any) -> None:
        message = pb.ControlClientMessage(kind=pb.MESSAGE_KIND_NOTIFICATION, **payload)
        self.send_control(message.SerializeToString())

    def ping(self) -> None:
        if self.wire == "json":
            self.send_data(json.dumps({"scope": "runtime", "data": {"type": "ping", "data": {}}}))
        else:
            self.control_notify(ping=pb.Ping())

    # ------------------------------------------------------------------ waiting
    async def wait_data(self, pred: Any, within: float = 15) -> Message:
        return await self._wait(self.data, pred, within)

    async def wait_control(self, pred: Any, within: float = 15) -> Any:
        return await self._wait(self.control, pred, within)

    async def reply(self, request_id: str, within: float = 15) -> Message:
        return await self.wait_data(lambda m: m["request_id"] == request_id, within)

    async def event(self, kind: str, pred: Any = None, within: float = 15) -> Message:
        return await self.wait_data(
            lambda m: m["type"] == kind and (pred is None or pred(m["data"])), within
        )

    async def _wait(self, items: list[Any], pred: Any, within: float) -> Any:
        async def find() -> Any:
            while True:
                for item in items:
                    if pred(item):
                        return item
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), within)

    async def close(self) -> None:
        await self.pc.close()
        await self.http.post("/stop_session")
        await self.http.aclose()
