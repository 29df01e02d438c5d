"""Session: one client's commands applied in order, driving one engine stream chunk by chunk.

Commands go through a queue with one consumer, so they apply in arrival order; the consumer
changes only the pure `SessionState`. A command may carry a `Reply` (the newer clients await one
per command): it gets the command's own event, or a bare acknowledgement, as soon as the command
is applied, or its rejection; JSON clients (`receive`) get the same as plain events. The
generation loop reads that state at each chunk boundary (`claim_chunk`) and brings the engine
stream in line: prompt switches, image anchors, the SR scale. Knows nothing of WebRTC: frames go
to a `FrameSink`, events to `emit`.

`StreamDriver` holds the engine stream and its image-strength mapping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from helios_serve.core.protocols import Engine
from helios_serve.errors import EngineRestartedError, HeliosError, StreamCancelledError
from helios_serve.realtime import commands as cmd
from helios_serve.realtime import protocol as wire
from helios_serve.realtime import state_machine as sm
from helios_serve.realtime.capabilities import model_capabilities, openapi_schema
from helios_serve.realtime.driver import FrameSink, StreamDriver, StreamOptions, Upscaler
from helios_serve.realtime.images import ImageLoader

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
        sink: FrameSink,
        images: ImageLoader,
        upscale: Upscaler,
        *,
        commands_per_second: float = 30.0,
    ) -> None:
        self._engine = engine
        self._options = options
        self._deliver = emit
        self._sink = sink
        self._images = images
        self._upscale = upscale
        self._limiter = RateLimiter(commands_per_second)
        self._state = sm.SessionState()
        self._queue: asyncio.Queue[tuple[cmd.Command, Reply | None]] = asyncio.Queue(
            MAX_QUEUED_COMMANDS
        )
        self._awaiting: _Awaiting | None = None
        self._wake = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._generator: asyncio.Task[None] | None = None
        self._driver = StreamDriver(engine, options, upscale)
        self._closed = False
        self.ended_reason: str | None = None
        """Set when the session cannot go on (its engine was restarted); the manager closes it."""
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
        """Stop both tasks and the stream; safe to call twice."""
        self._closed = True
        self._wake.set()
        for task in (self._consumer, self._generator):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._driver.close()

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

    async def _apply(self, command: cmd.Command) -> None:
        s = self._state
        match command:
            case cmd.SetPrompt(prompt):
                self._state = sm.set_prompt(s, prompt)
                self._emit(wire.prompt_accepted(prompt))
                self._emit_conditions()
            case cmd.SchedulePrompt(prompt, chunk):
                self._state = sm.schedule_prompt(s, prompt, chunk)
                self._emit(wire.prompt_accepted(prompt))
                self._emit_conditions()
            case cmd.SetImage(ref):
                image = await self._images.load("set_image", ref)
                self._state = sm.set_image(self._state, image)
                self._emit(wire.image_accepted(image.width, image.height))
                self._emit_conditions()
            case cmd.SetConditioning(prompt, ref):
                image = await self._images.load("set_conditioning", ref)  # validate before change
                self._state = sm.set_conditioning(self._state, prompt, image)
                self._emit(wire.prompt_accepted(prompt))
                self._emit(wire.image_accepted(image.width, image.height))
                self._emit_conditions()
            case cmd.ClearImage():
                self._state = sm.clear_image(s)
                self._emit_conditions()
            case cmd.SetImageStrength(value):
                self._state = sm.set_image_strength(s, value)
            case cmd.SetSrScale(scale):
                self._state = sm.set_sr_scale(s, scale)
            case cmd.SetSeed(seed):
                self._state = sm.set_seed(s, seed)
            case _:
                await self._apply_playback(command)
                return
        self._emit_state()

    async def _apply_playback(self, command: cmd.Command) -> None:
        s = self._state
        match command:
            case cmd.Start():
                self._state = sm.start(s)
                self._emit(wire.generation_started(sm.first_prompt(s) or "", 0))
                self._generator = asyncio.create_task(self._generate(self._state.epoch))
            case cmd.Pause():
                self._state = sm.pause(s)
                self._emit(wire.generation_paused())
            case cmd.Resume():
                self._state = sm.resume(s)
                self._wake.set()
                self._emit(wire.generation_resumed())
            case cmd.Reset():
                self._state = sm.reset(s)
                await self._stop_generation()
                self._emit(wire.generation_reset())
        self._emit_state()

    async def _stop_generation(self) -> None:
        # The epoch has moved on, so the engine's cancel check fires at its next step.
        self._wake.set()
        if self._generator is not None:
            self._generator.cancel()
            await asyncio.gather(self._generator, return_exceptions=True)
            self._generator = None
        await self._driver.close()
        self._sink.clear()

    def _emit_state(self) -> None:
        self._emit(wire.state_event(self._state.snapshot()))

    def _emit_conditions(self) -> None:
        s = self._state
        self._emit(wire.conditions_ready(s.has_prompt, s.image is not None))

    # ---------------------------------------------------------------- generation
    def _stale(self, epoch: int) -> bool:
        return self._closed or self._state.epoch != epoch

    def _is_stale(self, plan: sm.ChunkPlan) -> bool:
        return self._stale(plan.epoch)

    async def _generate(self, epoch: int) -> None:
        while not self._stale(epoch):
            while self._state.paused and not self._stale(epoch):
                self._wake.clear()
                await self._wake.wait()
            if self._stale(epoch):
                return
            self._state, plan = sm.claim_chunk(self._state)
            try:
                frames = await self._driver.make_chunk(plan, self._state, self._is_stale)
            except StreamCancelledError:
                return  # only raised once the epoch moved on (reset) or the session closed
            except EngineRestartedError as exc:
                if self._stale(epoch):
                    return
                # the stream died with the engine process: end the session, say so once
                logger.warning("session ends at chunk %d: %s", plan.index, exc)
                self.ended_reason = "engine restarted"
                self._emit(
                    wire.command_error(
                        "start",
                        "engine_restarted: the engine stopped and was restarted; this session "
                        "has ended, start a new one",
                    )
                )
                return
            except Exception as exc:
                if self._stale(epoch):
                    return
                logger.exception("session chunk %d failed", plan.index)
                self._state = sm.fail_chunk(self._state)
                # the log has the exception; the client gets no internals
                code = exc.code if isinstance(exc, HeliosError) else "internal_error"
                self._emit(wire.command_error("start", f"generation_failed: {code}"))
                self._emit_state()
                continue
            if self._stale(epoch):
                return
            await self._sink.put(frames)  # the only wait: a full buffer paces generation
            if self._stale(epoch):
                return
            self._state = sm.complete_chunk(self._state, len(frames))
            self._emit(wire.chunk_complete(plan.index, len(frames), plan.prompt))
            self._emit_state()
