"""SessionHandle: one session's parts (state machine owner, buffer, connections, uploads), status.

A session talks to its client through one live `Connection` at a time: the implicit one of the
2.9.0 `sdp_params` flow (id 0, JSON), or one the newer clients register (`register_connection`,
ids from 1, wire format sniffed). An offer on any connection makes it the live one and closes the
peer it replaces (a reconnect). Session events go to the live connection's `ClientLink`.

A session outlives its peers: one whose client went away stays (stream, prompt, state) until
the client has been silent for the idle timeout (`idle_for`: no channel message, no signalling
request; `heard_ago`: no RTCP on the live peer), so a client back sooner re-offers onto it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from helios_serve.core.protocols import Engine, Upscaler
from helios_serve.errors import InvalidInputError, UnavailableError
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.driver import StreamOptions
from helios_serve.realtime.egress import EgressGovernor
from helios_serve.realtime.playback import PlaybackRate, RatePolicy
from helios_serve.realtime.playout import FrameBuffer
from helios_serve.realtime.reactor import protocol as wire
from helios_serve.realtime.reactor.images import ImageLoader
from helios_serve.realtime.reactor.link import ClientLink, WireFormat
from helios_serve.realtime.reactor.peer import (
    MAX_REMOTE_CANDIDATES,
    PeerLink,
    RemoteCandidate,
    TrackMapping,
)
from helios_serve.realtime.reactor.session import Session
from helios_serve.realtime.reactor.track import PacedVideoTrack
from helios_serve.realtime.reactor.uploads import UploadStore

logger = logging.getLogger(__name__)
LEGACY_CONNECTION = 0
"""The connection of the 2.9.0 flow, which registers none."""
MAX_CONNECTIONS = 8
"""Connection ids a session holds at once; registering more is refused (503) until one ends."""


class ConnectionLimitError(UnavailableError):
    """Every connection id of the session is taken."""


MAX_TRICKLED_CANDIDATES = 128
"""ICE candidates a connection may post per offer, early ones included; a browser gathers a
handful per network interface. Past it: 400 `too_many_candidates`."""


class TooManyCandidatesError(InvalidInputError):
    code = "too_many_candidates"


class Status(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


class SessionMode(StrEnum):
    """Reactor's two ways to start: local (one client, refused when full) or coordinator
    (waits PENDING for a slot)."""

    LOCAL = "local"
    COORDINATOR = "coordinator"


@dataclass
class Negotiation:
    task: asyncio.Task[None] | None = None
    answer: str | None = None
    error: str | None = None


@dataclass
class Connection:
    """One client connection: its negotiation, peer and link (replaced by a re-offer)."""

    id: int
    wire_format: WireFormat | None
    negotiation: Negotiation = field(default_factory=Negotiation)
    peer: PeerLink | None = None
    link: ClientLink | None = None
    early_candidates: list[RemoteCandidate] = field(default_factory=list)
    """Trickled before any offer on this connection: handed to its first peer."""
    early_final: bool = False
    trickled: int = 0
    """Candidates posted since this connection's last offer (a few per offer is normal)."""

    async def close(self) -> None:
        if self.negotiation.task is not None:
            self.negotiation.task.cancel()
        if self.peer is not None:
            await self.peer.close()


@dataclass
class SessionHandle:
    id: str
    mode: SessionMode
    options: StreamOptions
    uploads: UploadStore
    status: Status = Status.PENDING
    session: Session | None = None
    buffer: FrameBuffer | None = None
    egress: EgressGovernor | None = None
    connections: dict[int, Connection] = field(default_factory=dict)
    live: Connection | None = None
    next_connection_id: int = 1
    created: float = field(default_factory=time.monotonic)
    polled: float = field(default_factory=time.monotonic)
    """Last `GET` of a PENDING session: clients that still want it keep polling."""
    touched: float = field(default_factory=time.monotonic)
    """Last signalling request naming the session (a reconnecting client is back)."""
    closed_reason: str | None = None
    closing_step: str = ""
    """Where `close` is (for the log line of a close that takes too long)."""
    creator: str = ""
    """Who created it (client address and `Origin`): a `stop_session` without an id, as the
    SDKs send it, ends only its own caller's sessions."""

    @property
    def peer(self) -> PeerLink | None:
        return self.live.peer if self.live is not None else None

    def activate(self, engine: Engine, config: RealtimeConfig, upscale: Upscaler) -> None:
        """Give the session its slot: build the buffer and session and start its consumer."""
        pinned = self.options.playback_fps
        rate = PlaybackRate(
            min(pinned or config.emission_fps, config.emission_fps),
            RatePolicy(floor_fps=config.playback_floor_fps),
            pinned=pinned is not None,
        )
        self.buffer = FrameBuffer(config.emission_fps, config.buffer_chunks, rate=rate)
        self.egress = EgressGovernor(config.emission_fps)
        self.session = Session(
            engine,
            self.options,
            self._emit,
            self.buffer,
            ImageLoader(self.uploads.resolve),
            upscale,
            commands_per_second=config.commands_per_second,
            egress=self.egress,
        )
        self.session.start()
        self.status = Status.ACTIVE

    def _emit(self, event: wire.Event) -> None:
        if self.live is not None and self.live.link is not None:
            self.live.link.notify(event)

    def register_connection(self) -> Connection:
        """A new connection id for the newer clients' flow (`ConnectionLimitError` when full)."""
        if len(self.connections) >= MAX_CONNECTIONS:
            raise ConnectionLimitError(
                f"all {MAX_CONNECTIONS} connections of the session are open; try again later"
            )
        connection = Connection(self.next_connection_id, None)
        self.next_connection_id += 1
        self.connections[connection.id] = connection
        return connection

    def legacy_connection(self) -> Connection:
        """The 2.9.0 flow's implicit connection (JSON from the start)."""
        connection = self.connections.get(LEGACY_CONNECTION)
        if connection is None:
            connection = Connection(LEGACY_CONNECTION, WireFormat.JSON)
            self.connections[LEGACY_CONNECTION] = connection
        return connection

    async def add_candidates(
        self, connection: Connection, candidates: list[RemoteCandidate], final: bool
    ) -> None:
        if connection.trickled + len(candidates) > MAX_TRICKLED_CANDIDATES:
            raise TooManyCandidatesError(
                f"more than {MAX_TRICKLED_CANDIDATES} ICE candidates for one offer"
            )
        connection.trickled += len(candidates)
        peer = connection.peer
        if peer is None or not peer.usable or not all(peer.takes(c) for c in candidates):
            # Before any offer, after the client dropped its peer, or gathered for an offer
            # still to come (a reconnect gathers before it re-offers, while this side may not
            # have noticed the old peer is gone): these belong to the next peer.
            if peer is not None and peer.usable:
                logger.info("connection %d: candidates held for its next offer", connection.id)
            room = max(0, MAX_REMOTE_CANDIDATES - len(connection.early_candidates))
            connection.early_candidates.extend(candidates[:room])
            connection.early_final = connection.early_final or final
            return
        await peer.add_candidates(candidates, final)

    async def drop_connection(self, connection: Connection) -> None:
        """Forget a connection whose peer is gone, freeing its id."""
        if self.connections.get(connection.id) is connection:
            del self.connections[connection.id]
        if self.live is connection:
            self.live = None
        await connection.close()

    def touch(self) -> None:
        self.touched = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the client's last channel message or signalling request."""
        seen = self.session.last_seen if self.session is not None else self.created
        return time.monotonic() - max(seen, self.touched)

    async def heard_ago(self) -> float | None:
        """Seconds since the live peer's last RTCP from the client (None: none yet)."""
        peer = self.peer
        return None if peer is None else await peer.heard_ago()

    async def connect(
        self,
        connection: Connection,
        offer: str,
        mapping: list[TrackMapping],
        config: RealtimeConfig,
        on_gone: Callable[[PeerLink, str], None],
    ) -> None:
        """Negotiate a peer on `connection` in the background; it becomes the live connection,
        and the peer it replaces (this connection's, or the live one's) is closed."""
        if self.session is None or self.buffer is None:
            raise RuntimeError("connect() before the session has a slot")
        replaced = self.live
        if replaced is not None and replaced is not connection:
            # The client moved to another connection: the old one is over, its id freed.
            self.connections.pop(replaced.id, None)
            await replaced.close()
        await connection.close()
        connection.peer = connection.link = None
        session = self.session
        track = PacedVideoTrack(
            self.buffer,
            config.emission_fps,
            self.options.width,
            self.options.height,
            self.egress,
        )
        # The peer and its link refer to each other; the lambdas see `link` once it is bound.
        peer = PeerLink(
            lambda label, frame: link.on_frame(label, frame),
            lambda label: link.channel_opened(label),
            lambda why: on_gone(peer, why),
            config.ice_servers,
        )
        link = ClientLink(session, peer.send, track.set_paused, connection.wire_format)
        connection.peer, connection.link = peer, link
        await peer.add_candidates(connection.early_candidates, connection.early_final)
        connection.early_candidates, connection.early_final = [], False
        connection.trickled = 0  # a new offer: the next candidates are its own
        negotiation = Negotiation()
        negotiation.task = asyncio.create_task(
            self._negotiate(negotiation, peer, offer, mapping, track, config.negotiation_timeout_s)
        )
        connection.negotiation = negotiation
        self.live = connection

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
            track.egress.codec, track.egress.encoder = peer.codec, peer.encoder
        except Exception as exc:  # reported to the client through GET sdp_params
            logger.warning("WebRTC negotiation failed: %s", exc)
            negotiation.error = str(exc) or type(exc).__name__

    async def close(self, reason: str) -> None:
        if self.status is Status.CLOSED:
            return
        self.status = Status.CLOSED
        self.closed_reason = reason
        if self.session is not None:
            self.closing_step = "the session (commands, generation, engine stream)"
            await self.session.close()
        for connection in list(self.connections.values()):
            self.closing_step = f"connection {connection.id}"
            await connection.close()
        self.closing_step = "done"
        self.live = None
        if self.buffer is not None:
            self.buffer.clear()
        self.uploads.clear()
