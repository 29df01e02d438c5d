"""ProcessEngine: the `Engine` protocol over a supervised engine process.

The model runs in a child process (`engine.child`), so nothing it does (a hang inside torch or
a CUDA driver, a segfault, an out-of-memory kill) can freeze or take down the server. The
parent keeps answering HTTP, and watches every call in flight: a call that reports no progress
for `stall_timeout_s`, or a child that dies, gets the child killed and a new one started. Calls
in flight and streams opened before fail with `EngineRestartedError` (jobs then resume from
their last saved chunk; sessions end). While the new child loads, `is_healthy()` is False
(`/ready` answers 503) and new calls wait for it.

The child's replies are read by one thread, which runs progress callbacks itself (as the
in-process engine runs them on its worker thread) and hands results to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

from helios_serve.core.protocols import CancelCheck, FramesCallback, Priority, ProgressCallback
from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.engine.child import ChildSpec
from helios_serve.engine.messages import (
    Alive,
    Call,
    Cancel,
    Failure,
    Frames,
    FromChild,
    LoadFailed,
    Open,
    Opened,
    Operation,
    Progress,
    Ready,
    Result,
    Stop,
    ToChild,
)
from helios_serve.engine.process_stream import ProcessStream
from helios_serve.engine.pulse import EnginePulse
from helios_serve.engine.spawn import EngineChild, spawn_child
from helios_serve.errors import EngineRestartedError

logger = logging.getLogger(__name__)

DEFAULT_STALL_TIMEOUT_S = 300.0
"""Long enough for the first chunk of a compiled 14B model; set lower where chunks are quick."""
WATCH_INTERVAL_S = 0.25


@dataclass
class _Call:
    future: asyncio.Future[Any]
    on_progress: ProgressCallback | None = None
    should_cancel: CancelCheck | None = None
    on_frames: FramesCallback | None = None
    """Called on the event loop with each `Frames` message, before the result settles."""
    cancel_sent: bool = False


class ProcessEngine:
    """Serves one checkpoint from a supervised child process; restarts it when it fails."""

    def __init__(
        self,
        spec: ChildSpec,
        *,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        on_restart: Callable[[str], None] | None = None,
        pulse: EnginePulse | None = None,
    ) -> None:
        """`pulse` judges, for `/ready`, whether a busy engine still steps (`engine.pulse`)."""
        self._spec = spec
        self._pulse = pulse or EnginePulse()
        self._stall_timeout_s = stall_timeout_s
        self._info: ModelInfo | None = None
        self._child: EngineChild | None = None
        self._generation = 0
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self.on_restart = on_restart
        self._closed = False
        self._last_activity = time.monotonic()
        self.restarts = 0

    # -- lifecycle --------------------------------------------------------------------------

    def launch(self) -> ModelInfo:
        """Start the engine process and wait for its model (blocking: before the server
        runs, so the app is built around the model's `ModelInfo`); `CheckpointError` if the
        model cannot be loaded."""
        self._child, self._info = spawn_child(self._spec)
        return self._info

    async def start(self) -> None:
        """Begin supervising, from the event loop that will make the calls."""
        if self._child is None:
            raise RuntimeError("ProcessEngine.launch() has not run")
        self._loop = asyncio.get_running_loop()
        self._adopt(self._child)
        self._watcher = asyncio.create_task(self._watch(), name="helios-engine-watch")

    def _adopt(self, child: EngineChild) -> None:
        self._child = child
        self._generation += 1
        self._last_activity = time.monotonic()
        threading.Thread(
            target=self._read, args=(child, self._generation), daemon=True, name="engine-reader"
        ).start()
        self._ready.set()

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("ProcessEngine.start() has not run")
        return self._info

    def is_healthy(self) -> bool:
        """Loaded, alive, and (while busy) stepping at its usual pace."""
        stalled = self._pulse.stalled(time.monotonic(), bool(self._calls))
        alive = self._child is not None and self._child.process.is_alive()
        return self._ready.is_set() and alive and not stalled

    def abort(self) -> None:
        """Kill the child at once, from outside any event loop (a start that failed)."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            child.kill()

    async def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self._restarting is not None:
            self._restarting.cancel()
        child, self._child = self._child, None
        self._ready.clear()
        self._fail_all(EngineRestartedError("the server is stopping"))
        if child is not None:
            with contextlib.suppress(OSError, EOFError):
                child.send(Stop())
            await asyncio.to_thread(child.process.join, 10)
            child.kill()

    # -- streams ----------------------------------------------------------------------------

    async def open_stream(
        self, request: StreamRequest, priority: Priority, resume: bytes | None = None
    ) -> ProcessStream:
        await self._ready.wait()
        generation = self._generation
        opened: Opened = await self.call(Open(request, resume), priority)
        return ProcessStream(self, generation, opened.stream, opened.chunk_index, request, priority)

    async def call(
        self,
        op: Operation,
        priority: Priority,
        *,
        generation: int | None = None,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        on_frames: FramesCallback | None = None,
    ) -> Any:
        """Run one operation in the engine process and wait for its result."""
        if generation is not None and generation != self._generation:
            raise EngineRestartedError("the engine was restarted; this stream is gone")
        if self._child is None or not self._ready.is_set():
            raise EngineRestartedError("the engine is restarting")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._calls:  # the engine was idle: its silence until now was no hang
            self._last_activity = time.monotonic()
            self._pulse.start(self._last_activity)
        self._calls[call_id] = _Call(future, on_progress, should_cancel, on_frames)
        try:
            self._child.send(Call(call_id, op, priority))
        except (OSError, EOFError, ValueError):
            self._calls.pop(call_id, None)
            self._schedule_restart("the engine process is gone")
            raise EngineRestartedError("the engine process is gone") from None
        try:
            return await future
        finally:
            call = self._calls.pop(call_id, None)
            gave_up = future.cancelled() or not future.done()  # awaiting it cancels it
            if gave_up and call is not None and not call.cancel_sent:
                # the caller gave up (its task was cancelled: a session closing, a chunk
                # dropped): stop the engine at its next step rather than finish for nobody
                # while the calls queued behind it wait
                self._send(Cancel(call_id))

    # -- the reader thread --------------------------------------------------------------------

    def _read(self, child: EngineChild, generation: int) -> None:
        while True:
            try:
                message = child.recv()
            except (EOFError, OSError):
                break
            self._last_activity = time.monotonic()  # any message: the engine is making progress
            self._pulse.beat(self._last_activity, bool(self._calls))
            try:
                self._dispatch(message)
            except Exception:  # a callback's failure (a progress write) must not end the reading
                logger.exception("engine reply %s: a callback failed; going on", type(message))
        if not self._closed and generation == self._generation:
            self._schedule_restart("the engine process exited")

    def _dispatch(self, message: FromChild) -> None:
        """One message from the child, on the reader thread."""
        match message:
            case Progress(call_id, progress):
                call = self._calls.get(call_id)
                if call is None:
                    return
                if call.on_progress is not None:
                    call.on_progress(progress)
                if call.should_cancel is not None and not call.cancel_sent:
                    # asked at every step, not only by the watcher's poll: a session that
                    # dropped this chunk waits for the engine to let go of it
                    self._on_loop(self._check_cancel, call_id)
            case Frames(call_id, frames):
                call = self._calls.get(call_id)
                if call is not None and call.on_frames is not None:
                    self._on_loop(call.on_frames, frames)  # before the result's `settle`
            case Result(call_id, value):
                self._settle(call_id, value, None)
            case Failure():
                self._settle(message.call_id, None, message.error())
            case Alive() | Ready() | LoadFailed():
                pass  # proof of life only (the first two come before the reader starts)
            case _:
                assert_never(message)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    def _check_cancel(self, call_id: int) -> None:
        call = self._calls.get(call_id)
        if call is None or call.should_cancel is None or call.cancel_sent:
            return
        if call.should_cancel():
            call.cancel_sent = True
            self._send(Cancel(call_id))

    def _settle(self, call_id: int, value: Any, exc: BaseException | None) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        future = call.future

        def settle() -> None:
            if future.done():
                return
            if exc is None:
                future.set_result(value)
            else:
                future.set_exception(exc)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

    # -- supervision --------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if not self._ready.is_set():
                continue
            # one worker runs the calls in turn, each reporting every step: while any is in
            # flight, a silent engine is a stuck one
            if self._calls and time.monotonic() - self._last_activity > self._stall_timeout_s:
                self._schedule_restart(f"no progress for {self._stall_timeout_s:g} s")
                continue
            for call_id in list(self._calls):
                self._check_cancel(call_id)

    def _send(self, message: ToChild) -> None:
        child = self._child
        if child is None:
            return
        try:
            child.send(message)
        except (OSError, EOFError, ValueError):
            self._schedule_restart("the engine process is gone")

    def _schedule_restart(self, reason: str) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._begin_restart, reason)

    def _begin_restart(self, reason: str) -> None:
        if self._closed or not self._ready.is_set():
            return  # already restarting, or stopping
        self._ready.clear()
        child, self._child = self._child, None
        self._generation += 1  # streams of the old child are gone now
        self._fail_all(EngineRestartedError(f"the engine was restarted ({reason})"))
        restart = self._restart(child, reason)
        self._restarting = asyncio.create_task(restart, name="helios-engine-restart")

    async def _restart(self, old: EngineChild | None, reason: str) -> None:
        if old is not None:
            await asyncio.to_thread(old.kill)
        delay = 1.0
        while not self._closed:
            self.restarts += 1  # every process started counts: one after a death in loading too
            logger.error("engine restart %d: %s", self.restarts, reason)
            if self.on_restart is not None:
                self.on_restart(reason)
            try:
                child, _ = await asyncio.to_thread(spawn_child, self._spec)
                self._adopt(child)
                logger.info("engine process restarted")
                return
            except Exception as exc:
                logger.exception("engine restart failed; trying again in %.0f s", delay)
                reason = f"the engine process exited while loading ({exc})"
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)

    def _fail_all(self, exc: BaseException) -> None:
        for call in list(self._calls.values()):
            if not call.future.done():
                call.future.set_exception(exc)
