"""SessionHandle: one session's parts (state machine owner, buffer, peer, uploads) and status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from helios_serve.core.protocols import Engine
from helios_serve.realtime import protocol as wire
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.driver import StreamOptions, Upscaler
from helios_serve.realtime.images import ImageLoader
from helios_serve.realtime.peer import PeerLink, TrackMapping
from helios_serve.realtime.session import Session
from helios_serve.realtime.track import FrameBuffer, PacedVideoTrack
from helios_serve.realtime.uploads import UploadStore

logger = logging.getLogger(__name__)


class Status(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


class Mode(StrEnum):
    LOCAL = "local"
    COORDINATOR = "coordinator"


@dataclass
class Negotiation:
    task: asyncio.Task[None] | None = None
    answer: str | None = None
    error: str | None = None


@dataclass
class SessionHandle:
    id: str
    mode: Mode
    options: StreamOptions
    uploads: UploadStore
    status: Status = Status.PENDING
    session: Session | None = None
    buffer: FrameBuffer | None = None
    peer: PeerLink | None = None
    negotiation: Negotiation = field(default_factory=Negotiation)
    created: float = field(default_factory=time.monotonic)
    closed_reason: str | None = None

    def activate(self, engine: Engine, config: RealtimeConfig, upscale: Upscaler) -> None:
        """Give the session its slot: build the buffer and session and start its consumer."""
        self.buffer = FrameBuffer(config.buffer_chunks)
        self.session = Session(
            engine,
            self.options,
            self._emit,
            self.buffer,
            ImageLoader(self.uploads.resolve),
            upscale,
            commands_per_second=config.commands_per_second,
        )
        self.session.start()
        self.status = Status.ACTIVE

    def _emit(self, event: wire.Event) -> None:
        if self.peer is not None:
            self.peer.send(wire.encode(event))

    def idle_for(self) -> float:
        seen = self.session.last_seen if self.session is not None else self.created
        return time.monotonic() - seen

    async def connect(
        self,
        offer: str,
        mapping: list[TrackMapping],
        config: RealtimeConfig,
        on_gone: Callable[[str], None],
    ) -> None:
        """Negotiate a peer (replacing any old one, a reconnect) in the background."""
        if self.session is None or self.buffer is None:
            raise RuntimeError("connect() before the session has a slot")
        old, self.peer = self.peer, None
        if self.negotiation.task is not None:
            self.negotiation.task.cancel()
        if old is not None:
            await old.close()
        session = self.session
        peer = PeerLink(session.receive, session.channel_opened, on_gone)
        self.peer = peer
        track = PacedVideoTrack(
            self.buffer, config.emission_fps, self.options.width, self.options.height
        )
        negotiation = Negotiation()
        negotiation.task = asyncio.create_task(
            self._negotiate(negotiation, peer, offer, mapping, track, config.negotiation_timeout_s)
        )
        self.negotiation = negotiation

    @staticmethod
    async def _negotiate(
        negotiation: Negotiation,
        peer: PeerLink,
        offer: str,
        mapping: list[TrackMapping],
        track: Any,
        timeout_s: float,
    ) -> None:
        try:
            negotiation.answer = await asyncio.wait_for(
                peer.negotiate(offer, mapping, track), timeout_s
            )
        except Exception as exc:  # reported to the client through GET sdp_params
            logger.warning("WebRTC negotiation failed: %s", exc)
            negotiation.error = str(exc) or type(exc).__name__

    async def close(self, reason: str) -> None:
        if self.status is Status.CLOSED:
            return
        self.status = Status.CLOSED
        self.closed_reason = reason
        if self.negotiation.task is not None:
            self.negotiation.task.cancel()
        if self.session is not None:
            await self.session.close()
        if self.peer is not None:
            await self.peer.close()
        if self.buffer is not None:
            self.buffer.clear()
        self.uploads.clear()
