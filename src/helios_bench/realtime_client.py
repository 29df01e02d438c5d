"""The wire side of `helios bench-realtime`: a `helios serve` subprocess and an SDK-like client.

The client speaks one of the two generations of Reactor clients, in local mode:

- `js-sdk-2.9` does what `@reactor-team/js-sdk` 2.9.0 does (tests/browser/SDK_NOTES.md): POST
  /start_session, GET ice_servers, a recvonly video transceiver plus a client-created "data"
  channel, a non-trickle offer POSTed to sdp_params (exactly 202), GET polling until 200 with the
  answer, then JSON commands in the nested envelope and a runtime ping every 5 s.
- `reactor-sdk-1.x` does what `reactor-sdk` 1.x does (../shared/specs/reactor-protocol-v1.md):
  the same session call, then POST .../connections, its ICE candidates trickled to
  .../ice_candidates before the offer (the offer carries none), "data" and "control" channels,
  protobuf `reactor_wire.v1` commands each awaiting a correlated reply, `Ping` on "control".

Every timestamp is `time.perf_counter()` minus the client's origin, taken when the event reaches
this process.
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

from helios_serve.core import framecode
from helios_serve.realtime.reactor import wire_pb
from helios_serve.realtime.reactor.proto import reactor_wire_pb2 as pb

from .realtime_analysis import ReceivedFrame, tick_of

API_HEADERS = {"Reactor-API-Version": "1", "Reactor-API-Accept-Version": "1"}
TRANSPORT_HEADERS = {"Reactor-WebRTC-Version": "1.0", "Authorization": "Bearer local"}
PING_EVERY_S = 5.0
JS_SDK_2_9 = "js-sdk-2.9"
REACTOR_SDK_1 = "reactor-sdk-1.x"
CLIENTS = {
    JS_SDK_2_9: {"flow": "sdp_params", "wire": "json", "channels": ["data"]},
    REACTOR_SDK_1: {"flow": "connections", "wire": "protobuf", "channels": ["data", "control"]},
}
"""The client generations the bench can speak, and what distinguishes them on the wire."""
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


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """The offer without its `a=candidate` lines, and those candidates as a trickling client
    posts them (`{candidate, sdp_mid, sdp_mline_index}`)."""
    lines, candidates = [], []
    mid, index = None, -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        if line.startswith("a=candidate:"):
            candidates.append({"candidate": line[2:], "sdp_mid": mid, "sdp_mline_index": index})
        elif line != "a=end-of-candidates":
            lines.append(line)
    return "\r\n".join(lines) + "\r\n", candidates


def server_argv(
    model: str,
    data_dir: Path | None,
    port: int,
    emission_fps: float | None,
    device: str | None,
    engine: str | None = None,
) -> list[str]:
    argv = [sys.executable, "-m", "helios_serve.cli", "serve", "--model", model]
    if engine is not None:
        argv += ["--engine", engine]
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
    def __init__(
        self,
        base_url: str,
        origin: float,
        timeout: float,
        generation: str = JS_SDK_2_9,
        read_codes: bool = False,
    ) -> None:
        """`read_codes`: read the frame code of every received frame (paced test engine)."""
        if generation not in CLIENTS:
            raise RealtimeBenchError(f"unknown client generation {generation!r}")
        self.generation = generation
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
        self._control: Any = None
        self._requests = 0
        self._sent: dict[str, tuple[str, float]] = {}
        self.replies: list[tuple[str, float, str]] = []
        """(command, seconds from send to its correlated reply, reply type or error code)."""
        self._read_codes = read_codes

    @property
    def protobuf(self) -> bool:
        return self.generation == REACTOR_SDK_1

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
        if self.protobuf:
            control_open = asyncio.Event()
            self._control = self.pc.createDataChannel("control")
            self._control.on("open", control_open.set)
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
        sdp = self.pc.localDescription.sdp
        version = "2.9.0" if not self.protobuf else "1.13.0"
        if self.protobuf:
            # Register, then trickle the candidates before the offer, which carries none.
            registered = await self._transport("POST", base + "/connections", {}, expect=201)
            base = f"{base}/connections/{registered.json()['connection_id']}"
            sdp, candidates = split_candidates(sdp)
            trickle: dict[str, Any] = {"candidates": candidates, "is_final": True}
            await self._transport("POST", base + "/ice_candidates", trickle, expect=202)
        offer = {
            "sdp_offer": sdp,
            "client_info": {"sdk_version": version, "sdk_type": "helios-bench-realtime"},
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
        waits = [connected.wait(), opened.wait()] + ([control_open.wait()] if self.protobuf else [])
        await self._wait(asyncio.gather(*waits), "peer connection")
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
        if self.protobuf:
            self._on_protobuf(message)
            return
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

    def _on_protobuf(self, message: str | bytes) -> None:
        t = self.now()
        reply = pb.DataServerMessage()
        try:
            reply.ParseFromString(message if isinstance(message, bytes) else message.encode())
        except Exception:
            return
        sent = self._sent.pop(reply.request_id, None) if reply.request_id else None
        which = reply.WhichOneof("payload")
        if which == "error":
            # A rejection is what command_error is to the JSON client.
            command = sent[0] if sent else "unknown"
            data = {"command": command, "reason": reply.error.message, "code": reply.error.code}
            event = Event(t, "command_error", data)
        elif which == "message":
            inner = reply.message
            event = Event(t, inner.type, wire_pb.struct_to_dict(inner.data))
        else:
            event = None
        if sent is not None:
            self.replies.append((sent[0], t - sent[1], event.type if event else "ack"))
        if event is not None:
            self.log.events.append(event)
            self._changed.set()

    async def _ping(self) -> None:
        while True:
            if self.protobuf:
                ping = pb.ControlClientMessage(kind=pb.MESSAGE_KIND_NOTIFICATION, ping=pb.Ping())
                if self._control is not None and self._control.readyState == "open":
                    self._control.send(ping.SerializeToString())
            else:
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
            code = framecode.read(luma) if self._read_codes else None
            pts_s = float(video.pts * video.time_base)
            frames.append(ReceivedFrame(t, tick, diff, code, pts_s))
            self._changed.set()

    def send_raw(self, doc: dict[str, Any]) -> float:
        if self._channel is None or self._channel.readyState != "open":
            raise RealtimeBenchError("the data channel is not open")
        t = self.now()
        self._channel.send(json.dumps(doc))
        return t

    def send(self, name: str, data: dict[str, Any] | None = None) -> float:
        """Send an application command; the client time it left."""
        if not self.protobuf:
            return self.send_raw(
                {"scope": "application", "data": {"type": name, "data": data or {}}}
            )
        if self._channel is None or self._channel.readyState != "open":
            raise RealtimeBenchError("the data channel is not open")
        self._requests += 1
        request_id = f"data_{self._requests}"
        command = pb.Command(type=name, data=wire_pb.dict_to_struct(data or {}))
        message = pb.DataClientMessage(
            request_id=request_id, kind=pb.MESSAGE_KIND_REQUEST, command=command
        )
        t = self.now()
        self._sent[request_id] = (name, t)
        self._channel.send(message.SerializeToString())
        return t

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
