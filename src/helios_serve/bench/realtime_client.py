"""The wire side of `helios bench-realtime`: a `helios serve` subprocess and an SDK-like client.

The client does what `@reactor-team/js-sdk` 2.9.0 does in local mode (tests/browser/SDK_NOTES.md):
POST /start_session, GET ice_servers, a recvonly video transceiver plus a client-created "data"
channel, a non-trickle offer POSTed to sdp_params (exactly 202), GET polling until 200 with the
answer, then JSON commands in the nested envelope and a runtime ping every 5 s. Every timestamp is
`time.perf_counter()` minus the client's origin, taken when the event reaches this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from .realtime_analysis import ReceivedFrame, tick_of

API_HEADERS = {"Reactor-API-Version": "1", "Reactor-API-Accept-Version": "1"}
TRANSPORT_HEADERS = {"Reactor-WebRTC-Version": "1.0", "Authorization": "Bearer local"}
PING_EVERY_S = 5.0
READY_LINE = re.compile(r"helios-serve ready: (\S+)")


class RealtimeBenchError(Exception):
    """The run cannot go on (server did not start, negotiation failed, a wait timed out)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`helios serve` in a child process; its stderr goes to `log_path`."""

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self, limit_s: float) -> str:
        """Start it and wait for its ready line; the base URL it announces."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=self._log
        )
        try:
            url = await asyncio.wait_for(self._ready_url(), limit_s)
        except TimeoutError:
            raise RealtimeBenchError(
                f"the server did not announce itself within {limit_s:.0f} s ({self._tail()})"
            ) from None
        # Keep reading stdout so a chatty server never blocks on a full pipe.
        self._drain = asyncio.create_task(self._drain_stdout())
        return url

    async def _ready_url(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                await self._proc.wait()
                raise RealtimeBenchError(
                    f"the server exited with {self._proc.returncode} before it was ready "
                    f"({self._tail()})"
                )
            match = READY_LINE.search(line.decode(errors="replace"))
            if match:
                return match.group(1)

    async def _drain_stdout(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while await self._proc.stdout.readline():
            pass

    def _tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return f"log {self.log_path}: " + " | ".join(text[-lines:])

    async def stop(self, grace_s: float = 20.0) -> None:
        """SIGINT (the server's graceful stop), then SIGKILL after `grace_s`."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), grace_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
        if self._log is not None:
            self._log.close()


def server_argv(
    model: str, data_dir: Path | None, port: int, emission_fps: float | None, device: str | None
) -> list[str]:
    argv = [sys.executable, "-m", "helios_serve.cli", "serve", "--model", model]
    argv += ["--port", str(port), "--host", "127.0.0.1"]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if emission_fps is not None:
        argv += ["--emission-fps", str(emission_fps)]
    if device is not None:
        argv += ["--device", device]
    return argv


@dataclass
class ConnectTimes:
    """Seconds from sending POST /start_session."""

    start_session: float = 0.0
    ice_servers: float = 0.0
    sdp_posted: float = 0.0
    sdp_answer: float = 0.0
    remote_description_set: float = 0.0
    ready: float = 0.0
    """Peer `connected` and the data channel open: the SDK's status "ready"."""
    first_video_frame: float | None = None
    sdp_polls: int = 0


@dataclass
class Event:
    t: float
    type: str
    data: dict[str, Any]


@dataclass
class ClientLog:
    events: list[Event] = field(default_factory=list)
    frames: list[ReceivedFrame] = field(default_factory=list)
    lost_order: int = 0
    """Frames whose tick went backwards (reordered or a restarted stream); dropped."""
    frame_size: tuple[int, int] | None = None
    """(width, height) of the last decoded frame."""


class RealtimeClient:
    def __init__(self, base_url: str, origin: float, timeout: float) -> None:
        # No default headers: coordinator and transport calls carry different sets (SDK_NOTES).
        self._http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self._origin = origin
        self._timeout = timeout
        self.pc = RTCPeerConnection()
        self.session: dict[str, Any] = {}
        self.log = ClientLog()
        self.fps = 24.0
        self._channel: Any = None
        self._track: Any = None
        self._got_track = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._prev_luma: np.ndarray[Any, np.dtype[np.int16]] | None = None

    def now(self) -> float:
        return time.perf_counter() - self._origin

    async def connect(self, extra_args: dict[str, Any] | None) -> ConnectTimes:
        """The SDK's local-mode `connect()`, until its status would be "ready"."""
        times = ConnectTimes()
        t0 = self.now()
        body = {"extra_args": extra_args} if extra_args else {}
        response = await self._http.post("/start_session", json=body, headers=API_HEADERS)
        if not response.is_success:
            raise RealtimeBenchError(f"start_session: {response.status_code} {response.text}")
        self.session = response.json()
        times.start_session = self.now() - t0
        caps = self.session.get("capabilities") or {}
        self.fps = float(caps.get("emission_fps") or 24.0)
        base = f"/sessions/{self.session['session_id']}/transport/webrtc"
        await self._transport("GET", base + "/ice_servers")
        times.ice_servers = self.now() - t0

        connected, opened = asyncio.Event(), asyncio.Event()
        channel = self.pc.createDataChannel("data")
        channel.on("open", opened.set)
        channel.on("message", self._on_message)
        self._channel = channel
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._on_track)

        @self.pc.on("connectionstatechange")  # type: ignore[misc]
        def _state() -> None:
            if self.pc.connectionState == "connected":
                connected.set()

        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {
            "sdp_offer": self.pc.localDescription.sdp,
            "client_info": {"sdk_version": "2.9.0", "sdk_type": "helios-bench-realtime"},
            "track_mapping": [
                {
                    "mid": transceiver.mid,
                    "name": "main_video",
                    "kind": "video",
                    "direction": "recvonly",
                }
            ],
        }
        await self._transport("POST", base + "/sdp_params", offer, expect=202)
        times.sdp_posted = self.now() - t0
        answer, times.sdp_polls = await self._poll_answer(base)
        times.sdp_answer = self.now() - t0
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        times.remote_description_set = self.now() - t0
        await self._wait(asyncio.gather(connected.wait(), opened.wait()), "peer connection")
        times.ready = self.now() - t0
        self._tasks.append(asyncio.create_task(self._ping()))
        await self._wait(self._got_track.wait(), "the video track")
        self._reader = asyncio.create_task(self._read_frames())
        self._tasks.append(self._reader)
        return times

    async def _transport(
        self, method: str, path: str, body: dict[str, Any] | None = None, expect: int = 200
    ) -> httpx.Response:
        # Transport calls carry the WebRTC headers and no API-version headers, like the SDK.
        response = await self._http.request(method, path, json=body, headers=TRANSPORT_HEADERS)
        if response.status_code != expect:
            raise RealtimeBenchError(
                f"{method} {path}: {response.status_code} (expected {expect}) {response.text}"
            )
        return response

    async def _poll_answer(self, base: str) -> tuple[str, int]:
        # Tighter than the SDK's 200 ms..3.2 s backoff, so the measured time is the server's.
        deadline = time.perf_counter() + self._timeout
        polls = 0
        while time.perf_counter() < deadline:
            polls += 1
            got = await self._http.get(base + "/sdp_params", headers=TRANSPORT_HEADERS)
            if got.status_code == 200:
                return str(got.json()["sdp_answer"]), polls
            if got.status_code != 202:
                raise RealtimeBenchError(f"GET sdp_params: {got.status_code} {got.text}")
            await asyncio.sleep(0.02)
        raise RealtimeBenchError(f"no SDP answer within {self._timeout:.0f} s")

    async def _wait(self, awaitable: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(awaitable, self._timeout)
        except TimeoutError:
            raise RealtimeBenchError(f"no {what} within {self._timeout:.0f} s") from None

    def _on_track(self, track: Any) -> None:
        if track.kind == "video":
            self._track = track
            self._got_track.set()

    def _on_message(self, message: str | bytes) -> None:
        t = self.now()
        try:
            doc = json.loads(message)
            inner = doc["data"]
            event = Event(t, str(inner["type"]), dict(inner.get("data") or {}))
        except (ValueError, KeyError, TypeError):
            return  # not an event in the nested envelope; nothing to time
        if doc.get("scope") == "application":
            self.log.events.append(event)
            self._changed.set()

    async def _ping(self) -> None:
        while True:
            self.send_raw({"scope": "runtime", "data": {"type": "ping", "data": {}}})
            await asyncio.sleep(PING_EVERY_S)

    async def _read_frames(self) -> None:
        # Kept minimal per frame (one grey conversion): a slow reader would delay arrival times.
        frames = self.log.frames
        while True:
            try:
                video = await self._track.recv()
            except MediaStreamError:
                return
            t = self.now()
            tick = tick_of(int(video.pts), float(video.time_base), self.fps)
            luma = np.asarray(video.to_ndarray(format="gray"), dtype=np.int16)
            prev = self._prev_luma
            diff = (
                0.0
                if prev is None or prev.shape != luma.shape
                else float(np.abs(luma - prev).mean())
            )
            self._prev_luma = luma
            self.log.frame_size = (int(video.width), int(video.height))
            if frames and tick <= frames[-1].tick:
                self.log.lost_order += 1
                continue
            frames.append(ReceivedFrame(t, tick, diff))
            self._changed.set()

    def send_raw(self, doc: dict[str, Any]) -> float:
        if self._channel is None or self._channel.readyState != "open":
            raise RealtimeBenchError("the data channel is not open")
        t = self.now()
        self._channel.send(json.dumps(doc))
        return t

    def send(self, name: str, data: dict[str, Any] | None = None) -> float:
        """Send an application command; the client time it left."""
        return self.send_raw({"scope": "application", "data": {"type": name, "data": data or {}}})

    def find(
        self, type_: str, pred: Callable[[dict[str, Any]], bool] | None = None
    ) -> Event | None:
        for event in self.log.events:
            if event.type == type_ and (pred is None or pred(event.data)):
                return event
        return None

    async def until(self, check: Callable[[], Any], what: str) -> Any:
        """Wait until `check()` returns something truthy (re-checked on every event or frame)."""

        async def loop() -> Any:
            while True:
                self._changed.clear()
                value = check()
                if value:
                    return value
                errors = [e for e in self.log.events if e.type == "command_error"]
                if errors:
                    raise RealtimeBenchError(f"the server rejected a command: {errors[0].data}")
                if self._reader is not None and self._reader.done():
                    raise RealtimeBenchError("the video track ended")
                await self._changed.wait()

        try:
            return await asyncio.wait_for(loop(), self._timeout)
        except TimeoutError:
            raise RealtimeBenchError(f"timed out waiting for {what}") from None

    async def get_json(self, path: str) -> dict[str, Any] | None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = await self._http.get(path, headers=API_HEADERS)
            if response.is_success:
                doc = response.json()
                return doc if isinstance(doc, dict) else None
        return None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
        with contextlib.suppress(httpx.HTTPError):
            await self._http.post("/stop_session", headers=API_HEADERS)
        await self._http.aclose()
