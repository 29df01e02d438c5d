"""Session: one client's commands applied in order, driving one engine stream chunk by chunk.

Commands go through a queue with one consumer, so they apply in arrival order; the consumer
changes only the pure `SessionState`. A command may carry a `Reply` (the newer clients await one
per command): it gets the command's own event, or a bare acknowledgement, as soon as the command
is applied, or its rejection; JSON clients (`receive`) get the same as plain events.

The session is the `ChunkSource` of its `Generation` (generation.py): the loop claims each chunk
from the state (`claim_chunk` fixes its prompt) just in time, and a command that changes what is
made (prompt, image, strength) first asks where it lands and rolls back the chunks made past the
screen (`_steer`), so it shows at the next chunk. Knows nothing of WebRTC: frames go to a
`Playout`, events to `emit` (`chunk_shown` when a chunk's first frame went out).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol, assert_never

from helios_serve.core.protocols import Engine, Upscaler
from helios_serve.core.types import Frames
from helios_serve.errors import EngineRestartedError, HeliosError
from helios_serve.realtime.driver import Conditions, StreamOptions
from helios_serve.realtime.egress import EgressGovernor
from helios_serve.realtime.generation import Claimed, Generation
from helios_serve.realtime.playout import MadeChunk, Playout
from helios_serve.realtime.reactor import commands as cmd
from helios_serve.realtime.reactor import protocol as wire
from helios_serve.realtime.reactor import state_machine as sm
from helios_serve.realtime.reactor.capabilities import model_capabilities, openapi_schema
from helios_serve.realtime.reactor.images import ImageLoader

logger = logging.getLogger(__name__)

MAX_QUEUED_COMMANDS = 256
Emit = Callable[[wire.Event], None]
CLIPS_UNSUPPORTED = "clips and recordings are not supported by helios-serve"


class Reply(Protocol):
    """Where one command's outcome goes (a correlated response on the protobuf wire)."""

    def accept(self, event: wire.Event | None) -> None: ...

    def reject(self, command: str, reason: str) -> None: ...


REPLY_EVENTS: dict[type, str] = {
    cmd.SetPrompt: "prompt_accepted",
    cmd.SchedulePrompt: "prompt_accepted",
    cmd.SetImage: "image_accepted",
    cmd.SetConditioning: "image_accepted",
    cmd.Start: "generation_started",
    cmd.Pause: "generation_paused",
    cmd.Resume: "generation_resumed",
    cmd.Reset: "generation_reset",
}
"""The event that answers a command; commands not listed are answered with their `state`."""


class _Awaiting:
    """A command being applied whose reply has not gone out yet."""

    def __init__(self, reply: Reply, event_type: str) -> None:
        self.reply = reply
        self.event_type = event_type


class RateLimiter:
    """Token bucket: `rate` messages a second on average, bursts up to `rate`."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._tokens = rate
        self._clock = clock
        self._last = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Session:
    """One real-time session; call `start()` once, feed `receive()`, and `close()` at the end."""

    def __init__(
        self,
        engine: Engine,
        options: StreamOptions,
        emit: Emit,
        sink: Playout,
        images: ImageLoader,
        upscale: Upscaler,
        *,
        commands_per_second: float = 30.0,
        egress: EgressGovernor | None = None,
    ) -> None:
        self._engine = engine
        self._egress = egress
        if egress is not None:
            egress.listener = self._emit_state  # a scale change shows in `state` at once
        self._options = options
        self._deliver = emit
        self._images = images
        self._upscale = upscale
        self._limiter = RateLimiter(commands_per_second)
        self._state = sm.SessionState()
        self._queue: asyncio.Queue[tuple[cmd.Command, Reply | None]] = asyncio.Queue(
            MAX_QUEUED_COMMANDS
        )
        self._awaiting: _Awaiting | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._generation = Generation(engine, options, upscale, sink, self)
        self._closed = False
        self.ended_reason: str | None = None
        """Set when the session cannot go on (its engine was restarted); the registry closes it."""
        self.last_seen = time.monotonic()

    @property
    def state(self) -> sm.SessionState:
        return self._state

    def start(self) -> None:
        self._consumer = asyncio.create_task(self._consume(), name="session-commands")

    def channel_opened(self) -> None:
        self.last_seen = time.monotonic()
        self._emit_state()

    def touch(self) -> None:
        """Any message from the client is liveness."""
        self.last_seen = time.monotonic()

    def admit(self) -> bool:
        """Count one inbound message against the rate limit; False when over it."""
        self.touch()
        return self._limiter.allow()

    def receive(self, raw: str | bytes) -> None:
        """Take one JSON data-channel message; every rejection is answered with `command_error`."""
        try:
            if not self.admit():
                raise wire.CommandError("unknown", "rate_limited")
            envelope = wire.parse_envelope(raw)
            if envelope.scope == wire.RUNTIME:
                self._on_runtime(envelope)
                return
        except wire.CommandError as exc:
            self._emit(wire.command_error(exc.command, exc.reason))
            return
        self.submit(envelope, None)

    def submit(self, envelope: wire.Envelope, reply: Reply | None) -> None:
        """Queue one application command; a rejection goes to `reply` (or out as an event)."""
        try:
            self._queue.put_nowait((cmd.parse_command(envelope), reply))
        except wire.CommandError as exc:
            self._reject(reply, exc.command, exc.reason)
        except asyncio.QueueFull:
            self._reject(reply, envelope.type[:64], "rate_limited: too many queued commands")

    def _reject(self, reply: Reply | None, command: str, reason: str) -> None:
        if reply is None:
            self._emit(wire.command_error(command, reason))
        else:
            reply.reject(command, reason)

    def _on_runtime(self, envelope: wire.Envelope) -> None:
        name = cmd.canonical_name(envelope.type)
        if name in ("ping", "file_uploaded"):
            return  # liveness is the message itself; uploads are already stored by HTTP
        if name in ("request_capabilities", "get_capabilities"):
            self._emit(wire.runtime_event("modelCapabilities", model_capabilities()))
            return
        if name == "request_schema":
            self._emit(wire.runtime_event("modelSchema", openapi_schema()))
            return
        if name in ("request_clip", "request_recording"):
            self._emit(wire.runtime_event("clipFailed", {"reason": CLIPS_UNSUPPORTED}))
            return
        raise wire.CommandError(envelope.type[:64], "unknown_command")

    async def close(self) -> None:
        """Stop taking commands and making chunks; safe to call twice."""
        self._closed = True
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        await self._generation.stop()

    # ------------------------------------------------------------------ commands
    async def _consume(self) -> None:
        while True:
            command, reply = await self._queue.get()
            if reply is not None:
                self._awaiting = _Awaiting(reply, REPLY_EVENTS.get(type(command), "state"))
            try:
                await self._apply(command)
            except wire.CommandError as exc:
                self._awaiting = None
                self._reject(reply, exc.command, exc.reason)
            except Exception:
                logger.exception("command %s failed", type(command).__name__)
                self._awaiting = None
                self._reject(reply, cmd.command_name(command), "internal_error")
            awaiting, self._awaiting = self._awaiting, None
            if awaiting is not None:
                awaiting.reply.accept(None)  # applied, and no event of its own to carry

    def _emit(self, event: wire.Event) -> None:
        """Send an event; the one that answers the command being applied goes as its reply."""
        awaiting = self._awaiting
        if awaiting is not None and wire.event_type(event) == awaiting.event_type:
            self._awaiting = None
            awaiting.reply.accept(event)
            return
        self._deliver(event)

    async def _apply(self, command: cmd.Command) -> None:  # noqa: C901 (a case per command)
        s = self._state
        match command:
            case cmd.SetPrompt(prompt):
                self._steer()
                self._state = sm.set_prompt(self._state, prompt)
                self._emit(wire.prompt_accepted(prompt))
                self._emit_conditions()
            case cmd.SchedulePrompt(prompt, chunk):
                sm.check_schedulable(s, chunk)
                if chunk < s.next_chunk:  # made but not on screen: it is made again
                    self._generation.rollback(chunk)
                self._state = sm.schedule_prompt(self._state, prompt, chunk)
                self._emit(wire.prompt_accepted(prompt))
                self._emit_conditions()
            case cmd.SetImage(ref):
                image = await self._images.load("set_image", ref)
                self._steer()
                self._state = sm.set_image(self._state, image)
                self._emit(wire.image_accepted(image.width, image.height))
                self._emit_conditions()
            case cmd.SetConditioning(prompt, ref):
                image = await self._images.load("set_conditioning", ref)  # validate before change
                self._steer()
                self._state = sm.set_conditioning(self._state, prompt, image)
                self._emit(wire.prompt_accepted(prompt))
                self._emit(wire.image_accepted(image.width, image.height))
                self._emit_conditions()
            case cmd.ClearImage():
                if s.image is not None:
                    self._steer()
                self._state = sm.clear_image(self._state)
                self._emit_conditions()
            case cmd.SetImageStrength(value):
                sm.set_image_strength(s, value)  # refused before anything changes
                if s.image is not None and (s.image_strength > 0) != (value > 0):
                    self._steer()  # the anchor comes or goes
                self._state = sm.set_image_strength(self._state, value)
            case cmd.SetSrScale(scale):
                self._state = sm.set_sr_scale(s, scale)
            case cmd.SetSeed(seed):
                self._state = sm.set_seed(s, seed)
            case cmd.Start() | cmd.Pause() | cmd.Resume() | cmd.Reset():
                await self._apply_playback(command)
                return
            case _:
                assert_never(command)  # a command of the table that nothing applies
        self._emit_state()

    async def _apply_playback(self, command: cmd.Playback) -> None:
        s = self._state
        match command:
            case cmd.Start():
                self._state = sm.start(s)
                self._emit(wire.generation_started(sm.first_prompt(s) or "", 0))
                self._generation.start()
            case cmd.Pause():
                self._state = sm.pause(s)
                self._emit(wire.generation_paused())
            case cmd.Resume():
                self._state = sm.resume(s)
                self._generation.wake()
                self._emit(wire.generation_resumed())
            case cmd.Reset():
                self._state = sm.reset(s)
                await self._generation.stop()
                self._emit(wire.generation_reset())
            case _:
                assert_never(command)
        self._emit_state()

    def _steer(self) -> None:
        """A change of what is made is coming: remake the chunks made past the screen that it
        should reach (where it lands: `steering`); paused, nothing already made changes."""
        s = self._state
        if not s.running:
            return
        landing = self._generation.landing(s.shown, s.next_chunk)
        if landing < s.next_chunk:
            self._generation.rollback(landing)

    def _emit_state(self) -> None:
        snapshot = self._state.snapshot()
        snapshot["generation"] = self._generation.stats.as_dict()
        snapshot["playback"] = self._generation.playback()
        if self._egress is not None:
            snapshot["egress"] = self._egress.as_dict()
        self._emit(wire.state_event(snapshot))

    def _emit_conditions(self) -> None:
        s = self._state
        self._emit(wire.conditions_ready(s.has_prompt, s.image is not None))

    # --------------------------------------------- the chunk source of `Generation`
    def wanted(self) -> bool:
        return not self._closed and self.ended_reason is None and self._state.running

    def claim(self) -> Claimed:
        self._state, plan = sm.claim_chunk(self._state)
        s = self._state
        anchor = s.image.pixels if s.image is not None and s.image_strength > 0 else None
        conditions = Conditions(
            prompt=plan.prompt,
            blend_chunks=self._options.prompt_blend_chunks,
            image=anchor,
            image_version=s.image_version,
            hard_cut=s.image_strength >= 1.0,
            # an SR network upscales in the loop: made at the scale the egress can send
            sr_scale=self._egress.limit(plan.sr_scale) if self._egress else plan.sr_scale,
            seed=s.seed,
        )
        return Claimed(plan.index, conditions)

    def unclaim(self, chunk: int) -> None:
        self._state = sm.rewind(self._state, chunk)

    def made(self, claimed: Claimed, frames: Frames) -> None:
        self._state = sm.complete_chunk(self._state, len(frames))
        self._emit(wire.chunk_complete(claimed.index, len(frames), claimed.conditions.prompt))
        self._emit_state()

    def started(self, chunk: MadeChunk, pts: int | None) -> None:
        self._state = sm.chunk_shown(self._state, chunk.index)
        self._emit(wire.chunk_shown(chunk.index, chunk.prompt, pts))

    def failed(self, claimed: Claimed, exc: Exception) -> bool:
        if isinstance(exc, EngineRestartedError):
            # the stream died with the engine process: end the session, say so once
            logger.warning("session ends at chunk %d: %s", claimed.index, exc)
            self.ended_reason = "engine restarted"
            self._emit(
                wire.command_error(
                    "start",
                    "engine_restarted: the engine stopped and was restarted; this session "
                    "has ended, start a new one",
                )
            )
            return False
        logger.error("session chunk %d failed", claimed.index, exc_info=exc)
        self._state = sm.fail_chunk(self._state)
        # the log has the exception; the client gets no internals
        code = exc.code if isinstance(exc, HeliosError) else "internal_error"
        self._emit(wire.command_error("start", f"generation_failed: {code}"))
        self._emit_state()
        return True
