"""`WS /v1/realtime/video`: vLLM-Omni's streaming video protocol, one engine stream per socket.

The socket's first message must be `session.start` (within `START_TIMEOUT_S`); anything wrong
with it is an `error` and the socket closes. Then each 33-frame chunk goes out as a
`video.chunk_metadata` text frame and one binary frame of fragmented MP4 (see `fmp4`); every
chunk is a whole fragment, so there is never a `trailer`. `num_frames` defaults to 99 and is
rounded up to whole chunks; the accepted values are echoed in `video.start`'s `config`.
During generation, bad messages get an `error` and the session goes on; `session.stop` cancels
the chunk being made, and `session.done` reports `stopped: true`. A socket holds one slot of
the same `SessionManager` as WebRTC sessions and never queues: over the limit it is `busy`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from helios_serve.core.json_text import JsonTextError, loads_strict
from helios_serve.core.protocols import Priority, Stream
from helios_serve.errors import HeliosError, StreamCancelledError
from helios_serve.realtime.fmp4 import FragmentedMp4Encoder
from helios_serve.realtime.manager import SessionLimitError, SessionManager
from helios_serve.realtime.ws_video_start import (
    Interaction,
    Plan,
    WsError,
    parse_interaction,
    plan_session,
)

logger = logging.getLogger(__name__)
PATH = "/v1/realtime/video"
START_TIMEOUT_S = 10.0
MAX_MESSAGE_CHARS = 1 << 20
Frames = npt.NDArray[np.uint8]


CLOSE_CODES = {"invalid_json": 1007, "invalid_message": 1003, "message_too_large": 1009}
"""RFC 6455 close codes for a socket refused before its session starts; the rest are 1008."""


@dataclass
class Chunk:
    index: int
    frames: Frames
    events: dict[str, list[str]] = field(default_factory=dict)


class VideoSocket:
    """One `/v1/realtime/video` connection: control messages, generation, sending."""

    def __init__(self, ws: WebSocket, manager: SessionManager) -> None:
        self.ws, self.manager = ws, manager
        self.request_id = f"video_stream-{uuid.uuid4().hex}"
        self._send_lock = asyncio.Lock()
        self._stop = False
        self._pending: list[Interaction] = []
        self._active: list[Interaction] = []
        self._seen: set[str] = set()

    async def send(self, payload: dict[str, Any], data: bytes | None = None) -> None:
        async with self._send_lock:  # a chunk's metadata and its bytes stay adjacent
            await self.ws.send_text(json.dumps(payload))
            if data is not None:
                await self.ws.send_bytes(data)

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

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
            slot = self.manager.acquire_slot()
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
            self.manager.release_slot(slot)

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
                return plan_session(msg, self.manager.engine.info)

    async def _session(self, plan: Plan) -> None:
        start = {"type": "video.start", "request_id": self.request_id, "format": "m4s"}
        await self.send(start | {"config": plan.config})
        queue: asyncio.Queue[Chunk | str | None] = asyncio.Queue(maxsize=1)
        producer = asyncio.create_task(self._produce(plan, queue))
        control = asyncio.create_task(self._control())
        encoder = FragmentedMp4Encoder(plan.request.width, plan.request.height, plan.fps)
        sent = 0
        try:
            while (item := await self._next(queue, control)) is not None:
                if isinstance(item, str):
                    await self.error("generation_failed", item)
                    return await self.ws.close(1011)
                if self._stop:
                    continue  # generated before the stop arrived: dropped, like the rest
                data = await asyncio.to_thread(encoder.encode, item.frames)
                meta = {
                    "type": "video.chunk_metadata", "request_id": self.request_id, "kind": "media",
                    "transport_chunk_index": sent, "generation_chunk_index": item.index,
                    "num_frames": len(item.frames), "byte_length": len(data), **item.events,
                }  # fmt: skip
                await self.send(meta, data)
                sent += 1
            done = {"type": "session.done", "request_id": self.request_id, "chunks": sent}
            await self.send(done | {"stopped": self._stop})
            await self.ws.close(1000)
        finally:
            self._stop = True
            for task in (producer, control):
                task.cancel()
            # wait(), not gather(): gather turns a cancellation of this task (a server or test
            # client tearing the app down) into one that escapes its cancel scope.
            await asyncio.wait({producer, control})
            for task in (producer, control):  # retrieved, so asyncio does not log them again
                _ = task.cancelled() or task.exception()

    @staticmethod
    async def _next(
        queue: asyncio.Queue[Chunk | str | None], control: asyncio.Task[None]
    ) -> Chunk | str | None:
        """The producer's next item; a disconnect seen by the control task ends the wait."""
        getter = asyncio.ensure_future(queue.get())
        try:
            done, _ = await asyncio.wait({getter, control}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            getter.cancel()  # a no-op once it holds its item
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
                elif kind == "session.ping":
                    await self.send({"type": "session.pong"})
                elif kind == "session.interaction":
                    event = parse_interaction(msg, self.manager.config.prompt_blend_chunks)
                    if event.event_id in self._seen:
                        raise WsError("event_id_conflict", f"event_id {event.event_id!r} was used")
                    self._seen.add(event.event_id)
                    self._pending.append(event)
                    ack = {"type": "session.interaction.queued", "request_id": self.request_id}
                    await self.send(ack | {"event_id": event.event_id})
                elif kind == "session.start":
                    raise WsError("already_started", "this socket's session is already running")
                else:
                    raise WsError("invalid_type", f"unknown message type {str(kind)[:60]!r}")
            except WsError as exc:
                await self.error(exc.code, str(exc))

    async def _produce(self, plan: Plan, queue: asyncio.Queue[Chunk | str | None]) -> None:
        stream: Stream | None = None
        try:
            stream = await self.manager.engine.open_stream(plan.request, Priority.SESSION)
            for index in range(plan.chunks):
                if self._stop:
                    break
                events = await self._boundary(stream, index)
                result = await stream.next_chunk(should_cancel=lambda: self._stop)
                await queue.put(Chunk(index, result.frames, events))
        except StreamCancelledError:
            pass  # only raised once the client stopped or went away
        except Exception as exc:
            logger.exception("%s: generation failed", self.request_id)
            code = exc.code if isinstance(exc, HeliosError) else "internal_error"
            await queue.put(f"generation failed ({code}); the server log has the details")
            return
        finally:
            if stream is not None:
                await stream.close()
        await queue.put(None)

    async def _boundary(self, stream: Stream, index: int) -> dict[str, list[str]]:
        """Apply queued prompts before chunk `index`; the event ids its metadata reports."""
        pending, self._pending = self._pending, []
        completed = [e.event_id for e in self._active + pending[:-1]] if pending else []
        if pending:  # only the newest prompt is blended in; earlier ones are superseded
            event = pending[-1]
            await stream.set_prompt(event.prompt, blend_chunks=event.blend)
            event.last_chunk = index + event.blend - 1
            self._active = [event]
        active = [e.event_id for e in self._active]
        completed += [e.event_id for e in self._active if e.last_chunk == index]
        self._active = [e for e in self._active if e.last_chunk > index]
        started = [e.event_id for e in pending]
        return {"started_event_ids": started, "active_event_ids": active,
                "completed_event_ids": completed}  # fmt: skip


def build_ws_video_router(manager: SessionManager) -> APIRouter:
    router = APIRouter()

    @router.websocket(PATH)
    async def realtime_video(ws: WebSocket) -> None:
        await VideoSocket(ws, manager).run()

    return router
