"""`WS /v1/realtime/video`: vLLM-Omni's streaming video protocol, one engine stream per socket.

The socket's first message must be `session.start` (within `START_TIMEOUT_S`); anything wrong
with it is an `error` and the socket closes. Then each 33-frame chunk goes out as a
`video.chunk_metadata` text frame and one binary frame of fragmented MP4 (see `media.fmp4`); every
chunk is a whole fragment, so there is never a `trailer`. `num_frames` defaults to 99 and is
rounded up to whole chunks; the accepted values are echoed in `video.start`'s `config`.
During generation, bad messages get an `error` and the session goes on; `session.stop` cancels
the chunk being made, and `session.done` reports `stopped: true`. A socket holds one slot of
the same `SlotPool` as WebRTC sessions and never queues: over the limit it is `busy`.

Chunks are made just in time and sent paced to the client's playback (`ws.stream`), so
a `session.interaction` lands on the first chunk not yet sent: chunks made but not sent are
remade under the new prompt, as a Reactor session's commands are (`generation`). Each
fragment's frames carry durations: 1/fps while the engine keeps up, longer (down to the floor
rate) while it does not, so the client's player slows down instead of stalling;
`extra_params.playback_fps` pins them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from helios_serve.core.json_text import JsonTextError, loads_strict
from helios_serve.core.types import Frames
from helios_serve.media.fmp4 import FragmentedMp4Encoder
from helios_serve.realtime.driver import StreamOptions
from helios_serve.realtime.generation import Generation
from helios_serve.realtime.playback import PlaybackRate, RatePolicy
from helios_serve.realtime.playout import MadeChunk
from helios_serve.realtime.slots import SessionLimitError, StreamHost
from helios_serve.realtime.ws.start import (
    Interaction,
    Plan,
    WsError,
    parse_interaction,
    plan_session,
)
from helios_serve.realtime.ws.stream import InteractionSource, SocketPlayout

logger = logging.getLogger(__name__)
PATH = "/v1/realtime/video"
START_TIMEOUT_S = 10.0
MAX_MESSAGE_CHARS = 1 << 20


CLOSE_CODES = {"invalid_json": 1007, "invalid_message": 1003, "message_too_large": 1009}
"""RFC 6455 close codes for a socket refused before its session starts; the rest are 1008."""


class VideoSocket:
    """One `/v1/realtime/video` connection: control messages, generation, sending."""

    def __init__(self, ws: WebSocket, host: StreamHost) -> None:
        self.ws, self.host = ws, host
        self.request_id = f"video_stream-{uuid.uuid4().hex}"
        self._send_lock = asyncio.Lock()
        self._stop = False
        self._seen: set[str] = set()
        self._source: InteractionSource | None = None
        self._generation: Generation | None = None

    async def send(self, payload: dict[str, Any], data: bytes | None = None) -> None:
        async with self._send_lock:  # a chunk's metadata and its bytes stay adjacent
            await self.ws.send_text(json.dumps(payload))
            if data is not None:
                await self.ws.send_bytes(data)

    async def error(self, code: str, message: str, **fields: str) -> None:
        await self.send({"type": "error", "code": code, "message": message, **fields})

    async def receive(self) -> dict[str, Any]:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise WsError("invalid_message", "send JSON text frames, not binary")
        if len(text) > MAX_MESSAGE_CHARS:
            raise WsError("message_too_large", "message over 1 MiB")
        try:
            msg = loads_strict(text)
        except JsonTextError as exc:
            raise WsError("invalid_json", f"invalid JSON: {exc}"[:200]) from None
        if not isinstance(msg, dict):
            raise WsError("invalid_json", "messages must be JSON objects")
        return msg

    async def run(self) -> None:
        # a browser that sent its key as the subprotocol pair `bearer, <key>` needs one echoed
        offered = self.ws.scope.get("subprotocols") or []
        await self.ws.accept(subprotocol="bearer" if "bearer" in offered else None)
        try:
            plan = await self._await_start()
            slot = self.host.slots.take()
        except SessionLimitError as exc:
            await self.error("busy", str(exc))
            return await self.ws.close(1013)
        except WsError as exc:
            await self.error(exc.code, str(exc))
            return await self.ws.close(CLOSE_CODES.get(exc.code, 1008))
        except TimeoutError:
            await self.error("timeout", f"no session.start within {START_TIMEOUT_S:g} s")
            return await self.ws.close(1008)
        except WebSocketDisconnect:
            return None
        try:
            await self._session(plan)
        except WebSocketDisconnect:
            logger.info("%s: client went away", self.request_id)
        finally:
            self.host.slots.give_back(slot)

    async def _await_start(self) -> Plan:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                msg = await self.receive()
                if msg.get("type") == "session.ping":
                    await self.send({"type": "session.pong"})
                    continue
                if msg.get("type") != "session.start":
                    raise WsError(
                        "invalid_type", f"expected session.start, got {msg.get('type')!r}"
                    )
                return plan_session(msg, self.host.engine.info)

    async def _session(self, plan: Plan) -> None:
        start = {"type": "video.start", "request_id": self.request_id, "format": "m4s"}
        await self.send(start | {"config": plan.config})
        config = self.host.config
        pinned = plan.playback_fps
        rate = PlaybackRate(
            min(pinned or plan.fps, plan.fps),
            RatePolicy(floor_fps=config.playback_floor_fps),
            pinned=pinned is not None,
        )
        playout = SocketPlayout(plan.fps, config.ws_send_ahead_s, self._finished, rate=rate)
        self._source = source = InteractionSource(plan)
        options = StreamOptions(
            plan.request.width, plan.request.height, plan.request.settings, latency=config.latency
        )
        self._generation = generation = Generation(
            self.host.engine, options, _no_upscale, playout, source
        )
        generation.start()
        control = asyncio.create_task(self._control())
        encoder = FragmentedMp4Encoder(plan.request.width, plan.request.height, plan.fps)
        sent = 0
        try:
            while (chunk := await self._next(playout, control)) is not None:
                data = await asyncio.to_thread(encoder.encode, chunk.frames, chunk.durations)
                meta = {
                    "type": "video.chunk_metadata", "request_id": self.request_id, "kind": "media",
                    "transport_chunk_index": sent, "generation_chunk_index": chunk.index,
                    "num_frames": len(chunk.frames), "byte_length": len(data),
                    **source.events.get(chunk.index, {}),
                }  # fmt: skip
                await self.send(meta, data)
                sent += 1
            if source.error is not None:
                await self.error("generation_failed", source.error)
                return await self.ws.close(1011)
            done = {"type": "session.done", "request_id": self.request_id, "chunks": sent}
            await self.send(done | {"stopped": self._stop})
            await self.ws.close(1000)
        finally:
            self._stop = True
            control.cancel()
            # wait(), not gather(): gather turns a cancellation of this task (a server or test
            # client tearing the app down) into one that escapes its cancel scope.
            await asyncio.wait({control})
            _ = control.cancelled() or control.exception()  # retrieved: not logged again
            await generation.stop()

    @staticmethod
    async def _next(playout: SocketPlayout, control: asyncio.Task[None]) -> MadeChunk | None:
        """The next chunk due to be sent; a disconnect seen by the control task ends the wait."""
        getter = asyncio.ensure_future(playout.next_due())
        try:
            done, _ = await asyncio.wait({getter, control}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            getter.cancel()  # a no-op once it holds its chunk
        if getter in done:
            return getter.result()
        control.result()  # re-raises WebSocketDisconnect (or a bug)
        raise WebSocketDisconnect(1006)

    async def _control(self) -> None:
        while True:
            try:
                msg = await self.receive()
                kind = msg.get("type")
                if kind == "session.stop":
                    self._stop = True
                    if self._source is not None and self._generation is not None:
                        self._source.stopped = True
                        await self._generation.stop()  # what was made and not sent is dropped
                elif kind == "session.ping":
                    await self.send({"type": "session.pong"})
                elif kind == "session.interaction":
                    event = parse_interaction(msg, self.host.config.prompt_blend_chunks)
                    if event.event_id in self._seen:
                        raise WsError(
                            "event_id_conflict",
                            f"event_id {event.event_id!r} was used",
                            request_id=self.request_id,
                            event_id=event.event_id,
                        )
                    self._seen.add(event.event_id)
                    self._steer(event)
                    ack = {"type": "session.interaction.queued", "request_id": self.request_id}
                    await self.send(ack | {"event_id": event.event_id})
                elif kind == "session.start":
                    raise WsError("already_started", "this socket's session is already running")
                else:
                    raise WsError("invalid_type", f"unknown message type {str(kind)[:60]!r}")
            except WsError as exc:
                await self.error(exc.code, str(exc), **exc.fields)

    def _finished(self) -> bool:
        """Generation has ended: every chunk made and queued, stopped, or failed."""
        source, generation = self._source, self._generation
        return source is None or generation is None or not (source.wanted() or generation.busy)

    def _steer(self, interaction: Interaction) -> None:
        """Queue an interaction where it lands first: chunks made but not sent are remade."""
        source, generation = self._source, self._generation
        if source is None or generation is None:
            return
        source.add(interaction)
        landing = generation.landing(source.committed, source.claimed)
        if landing < source.claimed:
            generation.rollback(landing)
        generation.wake()


def _no_upscale(frames: Frames, scale: int) -> Frames:  # noqa: ARG001  # no SR here
    return frames


def build_ws_video_router(host: StreamHost) -> APIRouter:
    router = APIRouter()

    @router.websocket(PATH)
    async def realtime_video(ws: WebSocket) -> None:
        await VideoSocket(ws, host).run()

    return router
