"""SessionRegistry: Reactor's sessions — admission, lookup, the PENDING queue, the liveness
watchdog, shutdown.

An ACTIVE session holds a slot of the server's `SlotPool` (shared with the WebSocket streams).
Local mode refuses a session when every slot is taken (`SessionLimitError`); coordinator mode
queues it as PENDING (at most `max_pending_sessions`; one nobody polls for `pending_timeout_s`
expires) and activates it when a slot frees. A session whose client has been silent for
`idle_timeout_s` (no channel message, no signalling request, no RTCP) is closed by the watchdog
and its slot handed on; a peer lost to the network does not end it sooner, so a client back
within the timeout (`reconnect()`) finds it as it was. A client that closes its peer (a closed
tab) frees the slot after `reconnect_grace_s` unless it re-offers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import replace
from typing import Any

from helios_serve.errors import NotFoundError
from helios_serve.realtime.reactor.bounded import finish_within
from helios_serve.realtime.reactor.handle import Connection, SessionHandle, SessionMode, Status
from helios_serve.realtime.reactor.peer import PeerLink, TrackMapping
from helios_serve.realtime.reactor.uploads import UploadBudget, UploadStore
from helios_serve.realtime.slots import SessionLimitError, StreamHost

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0
"""How long ending a session may hold up its caller (`stop_session`, the watchdog). A close
that takes longer (seen twice in ~4 loaded full test runs, on an in-process fake engine, cause
not yet found) is logged with the step it is in and goes on in the background; the slot is
given back, so the API answers and the next session can start (`bounded.finish_within`)."""
KEEP_CLOSED = 256
"""Closed sessions remembered so GET can answer CLOSED instead of 404."""


class UnknownSessionError(NotFoundError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id[:80]!r}", param="session_id")


class SessionRegistry:
    def __init__(self, host: StreamHost) -> None:
        self.host = host
        self.engine = host.engine
        self.config = host.config
        self._sessions: dict[str, SessionHandle] = {}
        self._closed: OrderedDict[str, SessionHandle] = OrderedDict()
        self._pending: deque[str] = deque()
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_of: dict[str, str] = {}
        """The slot token each ACTIVE session holds."""
        self._upload_budget = UploadBudget(self.config.max_upload_total_bytes)
        host.slots.when_free(self._promote)

    async def create(
        self, mode: SessionMode, overrides: dict[str, Any], creator: str = ""
    ) -> SessionHandle:
        """A new session: ACTIVE if a slot is free, else PENDING (coordinator) or refused.

        Its id is its creator's secret (128 random bits, answered only to the creation): every
        route that acts on the session (connections, offers, candidates, uploads, stop) names
        it in its path, which is where the unmodified SDKs carry it, and no route lists it."""
        self._ensure_watchdog()
        full = self.host.slots.full
        if full and mode is SessionMode.LOCAL:
            raise SessionLimitError(
                f"all {self.config.max_sessions} session slots are in use; try again later"
            )
        if full and len(self._pending) >= self.config.max_pending_sessions:
            raise SessionLimitError(
                f"all {self.config.max_sessions} session slots are in use and "
                f"{len(self._pending)} sessions are already waiting; try again later"
            )
        options = replace(self.host.default_options(), **overrides)
        uploads = UploadStore(
            self.config.max_upload_bytes, self.config.max_uploads_per_session, self._upload_budget
        )
        handle = SessionHandle(secrets.token_hex(16), mode, options, uploads, creator=creator)
        self._sessions[handle.id] = handle
        if full:
            self._pending.append(handle.id)
        else:
            self._activate(handle)
        logger.info("session %s created (%s, %s)", handle.id, mode.value, handle.status.value)
        return handle

    def get(self, session_id: str) -> SessionHandle:
        """Any known session, closed ones included; a look at a PENDING one keeps it waiting."""
        handle = self._sessions.get(session_id) or self._closed.get(session_id)
        if handle is None:
            raise UnknownSessionError(session_id)
        handle.polled = time.monotonic()
        return handle

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def live(self, session_id: str) -> SessionHandle:
        """A session that is not closed (404 otherwise)."""
        handle = self._sessions.get(session_id)
        if handle is None:
            raise UnknownSessionError(session_id)
        handle.touch()  # every signalling request is a sign of life (a reconnect's first)
        return handle

    def local_sessions(self) -> list[SessionHandle]:
        return [h for h in self._sessions.values() if h.mode is SessionMode.LOCAL]

    def stoppable(self, caller: str, wanted: str | None) -> list[SessionHandle]:
        """The local sessions a `stop_session` ends: the one it names (its id is the secret),
        else those `caller` created (the SDKs' stop names none)."""
        return [
            h
            for h in self.local_sessions()
            if (h.id == wanted if wanted is not None else h.creator == caller)
        ]

    async def connect(
        self,
        handle: SessionHandle,
        connection: Connection,
        offer: str,
        mapping: list[TrackMapping],
    ) -> None:
        def on_gone(peer: PeerLink, why: str) -> None:
            # Only the session's current peer may end it: a replaced one is closing on purpose.
            if handle.peer is peer and not peer.closed:
                self._spawn(self._close_unless_reconnected(handle, peer, why))

        await handle.connect(connection, offer, mapping, self.config, on_gone)

    async def _close_unless_reconnected(
        self, handle: SessionHandle, peer: PeerLink, why: str
    ) -> None:
        """The client's peer went away. Closed by the client: end the session, unless a new
        offer (the clients' `reconnect()`) replaces the peer within the grace period. Lost to
        the network: the idle timeout decides (the client may come back)."""
        await asyncio.sleep(self.config.reconnect_grace_s)
        if handle.peer is not peer:
            return
        if peer.network_failed:
            logger.info("session %s: %s; kept for the client to reconnect", handle.id, why)
        else:
            await self.close(handle.id, why)

    async def close(self, session_id: str, reason: str) -> None:
        handle = self._sessions.pop(session_id, None)
        if handle is None:
            return
        if session_id in self._pending:
            self._pending.remove(session_id)
        if await finish_within(handle.close(reason), CLOSE_TIMEOUT_S):
            logger.info("session %s closed: %s", session_id, reason)
        else:
            logger.warning(
                "session %s did not finish closing within %.0f s (at: %s); its slot is given "
                "back and the close goes on in the background",
                session_id,
                CLOSE_TIMEOUT_S,
                handle.closing_step,
            )
        self._closed[session_id] = handle
        while len(self._closed) > KEEP_CLOSED:
            self._closed.popitem(last=False)
        slot = self._slot_of.pop(session_id, None)
        if slot is not None:
            self.host.slots.give_back(slot)  # a PENDING session may take it (`_promote`)

    def _activate(self, handle: SessionHandle) -> None:
        self._slot_of[handle.id] = self.host.slots.take()
        handle.activate(self.engine, self.config, self.host.upscale)

    def _promote(self) -> None:
        """A slot was given back (here or by a WebSocket stream): the oldest PENDING session
        that still waits gets it."""
        while self._pending and not self.host.slots.full:
            handle = self._sessions.get(self._pending.popleft())
            if handle is not None and handle.status is Status.PENDING:
                self._activate(handle)
                logger.info("session %s got a slot", handle.id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.watchdog_interval_s)
            for handle in list(self._sessions.values()):
                ended = handle.session.ended_reason if handle.session is not None else None
                if ended is not None:
                    await self.close(handle.id, ended)
                elif (
                    handle.status is Status.PENDING
                    and time.monotonic() - handle.polled > self.config.pending_timeout_s
                ):
                    await self.close(handle.id, "expired while waiting for a slot (not polled)")
                elif handle.status is Status.ACTIVE and await self._idle(handle):
                    await self.close(
                        handle.id, f"the client was silent for {self.config.idle_timeout_s:g} s"
                    )

    async def _idle(self, handle: SessionHandle) -> bool:
        """Nothing from the client for the idle timeout: no message, request or RTCP."""
        limit = self.config.idle_timeout_s
        if handle.idle_for() <= limit:
            return False
        heard = await handle.heard_ago()
        return heard is None or heard > limit

    async def shutdown(self) -> None:
        """Close every session and stop the watchdog (the app's shutdown hook)."""
        for session_id in list(self._sessions):
            await self.close(session_id, "server shutting down")
        for task in [self._watchdog, *self._tasks]:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._watchdog = None
