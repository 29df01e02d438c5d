"""A Python stand-in for @reactor-team/js-sdk 2.9.0 (local mode); uvicorn in a thread.

The client does what the SDK does: start_session, a recvonly video transceiver and a "data"
channel, a non-trickle offer to sdp_params (202), polling for the answer, then commands and
events in the nested envelope, with a runtime ping every `ping_every_s`.
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

HEADERS = {"Reactor-API-Version": "1", "Reactor-API-Accept-Version": "1"}
TRANSPORT_HEADERS = {**HEADERS, "Reactor-WebRTC-Version": "1.0", "Authorization": "Bearer local"}


class ReactorClient:
    def __init__(self, base_url: str, ping_every_s: float | None = 0.5) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=20)
        self.pc = RTCPeerConnection()
        self.events: list[dict[str, Any]] = []
        self.session: dict[str, Any] = {}
        self._ping_every_s = ping_every_s
        self._channel: Any = None
        self._track: Any = None
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

    def _on_track(self, track: Any) -> None:
        if track.kind == "video":
            self._track = track

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

    async def frame(self) -> npt.NDArray[np.uint8]:
        assert self._track is not None, "the answer carried no video track"
        video = await asyncio.wait_for(self._track.recv(), 10)
        return np.asarray(video.to_ndarray(format="rgb24"))

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
