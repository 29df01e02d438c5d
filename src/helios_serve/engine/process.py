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
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helios_serve.core.protocols import CancelCheck, Priority, ProgressCallback
from helios_serve.core.settings import steps_in_chunk
from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.core.types import ChunkResult, StepProgress
from helios_serve.engine.child import ChildSpec, main
from helios_serve.errors import (
    CheckpointError,
    EngineFailedError,
    EngineRestartedError,
    InvalidInputError,
    StreamCancelledError,
)

logger = logging.getLogger(__name__)

DEFAULT_STALL_TIMEOUT_S = 300.0
"""Long enough for the first chunk of a compiled 14B model; set lower where chunks are quick."""
WATCH_INTERVAL_S = 0.25


@dataclass
class _Call:
    future: asyncio.Future[Any]
    on_progress: ProgressCallback | None = None
    should_cancel: CancelCheck | None = None
    cancel_sent: bool = False


class _Child:
    """One engine process and the pipe to it."""

    def __init__(self, spec: ChildSpec) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA
        self.conn, child_end = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=main, args=(child_end, spec), name="helios-engine")
        self.process.start()
        child_end.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


class ProcessEngine:
    """Serves one checkpoint from a supervised child process; restarts it when it fails."""

    def __init__(
        self,
        spec: ChildSpec,
        *,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self._spec = spec
        self._stall_timeout_s = stall_timeout_s
        self._info: ModelInfo | None = None
        self._child: _Child | None = None
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
        self._child, self._info = _spawn(self._spec)
        return self._info

    async def start(self) -> None:
        """Begin supervising, from the event loop that will make the calls."""
        if self._child is None:
            raise RuntimeError("ProcessEngine.launch() has not run")
        self._loop = asyncio.get_running_loop()
        self._adopt(self._child)
        self._watcher = asyncio.create_task(self._watch(), name="helios-engine-watch")

    def _adopt(self, child: _Child) -> None:
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
        return self._ready.is_set() and self._child is not None and self._child.process.is_alive()

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
                child.conn.send(("stop",))
            await asyncio.to_thread(child.process.join, 10)
            child.kill()

    # -- streams ----------------------------------------------------------------------------

    async def open_stream(
        self, request: StreamRequest, priority: Priority, resume: bytes | None = None
    ) -> ProcessStream:
        await self._ready.wait()
        generation = self._generation
        args = {"request": request, "resume": resume}
        stream_id, index = await self.call("open", args, priority)
        return ProcessStream(self, generation, stream_id, index, request, priority)

    async def call(
        self,
        op: str,
        args: dict[str, Any],
        priority: Priority,
        *,
        generation: int | None = None,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
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
        self._calls[call_id] = _Call(future, on_progress, should_cancel)
        try:
            self._child.conn.send(("call", call_id, op, args, int(priority)))
        except (OSError, EOFError, ValueError):
            self._calls.pop(call_id, None)
            self._schedule_restart("the engine process is gone")
            raise EngineRestartedError("the engine process is gone") from None
        try:
            return await future
        finally:
            self._calls.pop(call_id, None)

    # -- the reader thread --------------------------------------------------------------------

    def _read(self, child: _Child, generation: int) -> None:
        while True:
            try:
                message = child.conn.recv()
            except (EOFError, OSError):
                break
            kind, call_id = message[0], message[1]
            self._last_activity = time.monotonic()  # any message: the engine is making progress
            call = self._calls.get(call_id)
            if call is None:
                continue
            if kind == "progress":
                if call.on_progress is not None:
                    progress: StepProgress = message[2]
                    call.on_progress(progress)
                if call.should_cancel is not None and not call.cancel_sent:
                    # asked at every step, not only by the watcher's poll: a session that
                    # dropped this chunk waits for the engine to let go of it
                    self._on_loop(self._check_cancel, call_id)
            elif kind == "result":
                self._resolve(call.future, message[2], None)
            elif kind == "error":
                self._resolve(call.future, None, _rebuild(*message[2:]))
        if not self._closed and generation == self._generation:
            self._schedule_restart("the engine process exited")

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    def _check_cancel(self, call_id: int) -> None:
        call = self._calls.get(call_id)
        if call is None or call.should_cancel is None or call.cancel_sent:
            return
        if call.should_cancel():
            call.cancel_sent = True
            self._send(("cancel", call_id))

    def _resolve(self, future: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
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

    def _send(self, message: tuple[Any, ...]) -> None:
        child = self._child
        if child is None:
            return
        try:
            child.conn.send(message)
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

    async def _restart(self, old: _Child | None, reason: str) -> None:
        if old is not None:
            await asyncio.to_thread(old.kill)
        delay = 1.0
        while not self._closed:
            self.restarts += 1  # every process started counts: one after a death in loading too
            logger.error("engine restart %d: %s", self.restarts, reason)
            if self.on_restart is not None:
                self.on_restart(reason)
            try:
                child, _ = await asyncio.to_thread(_spawn, self._spec)
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


def _spawn(spec: ChildSpec) -> tuple[_Child, ModelInfo]:
    """A new engine process with its model loaded (blocking)."""
    child = _Child(spec)
    message = _first_message(child)
    if message[0] != "ready":
        child.kill()
        raise CheckpointError(str(message[1]))
    info: ModelInfo = message[1]
    return child, info


def _first_message(child: _Child) -> tuple[Any, ...]:
    """Wait for the child's `ready` (or `load_failed`); an exit before it is a failure too."""
    while True:
        if child.conn.poll(0.5):
            try:
                message: tuple[Any, ...] = child.conn.recv()
            except (EOFError, OSError):
                return ("load_failed", f"the engine process exited ({child.process.exitcode})")
            return message
        if not child.process.is_alive():
            return ("load_failed", f"the engine process exited ({child.process.exitcode})")


def _rebuild(code: str, message: str, param: str | None) -> BaseException:
    """The parent-side error for one raised in the engine process."""
    if code == StreamCancelledError.code:
        return StreamCancelledError(message, param=param)
    if code == InvalidInputError.code:
        return InvalidInputError(message, param=param)
    return EngineFailedError(message, code=code, param=param)


class ProcessStream:
    """A `Stream` whose operations run in the engine process."""

    def __init__(
        self,
        engine: ProcessEngine,
        generation: int,
        stream_id: int,
        chunk_index: int,
        request: StreamRequest,
        priority: Priority,
    ) -> None:
        self._engine = engine
        self._generation = generation
        self._id = stream_id
        self._index = chunk_index
        self._settings = request.settings
        self._priority = priority

    @property
    def chunk_index(self) -> int:
        return self._index

    def steps_in_chunk(self, index: int) -> int:
        return steps_in_chunk(self._engine.info.variant, self._settings, index)

    async def _call(self, op: str, **args: Any) -> Any:
        return await self._engine.call(
            op, {"stream": self._id, **args}, self._priority, generation=self._generation
        )

    async def next_chunk(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        *,
        prefetch: bool = False,
        checkpoint: bool = False,
    ) -> ChunkResult:
        if should_cancel is not None and should_cancel():
            raise StreamCancelledError("cancelled before the chunk started")
        result: ChunkResult = await self._engine.call(
            "next_chunk",
            {"stream": self._id, "prefetch": prefetch, "checkpoint": checkpoint},
            self._priority,
            generation=self._generation,
            on_progress=on_progress,
            should_cancel=should_cancel,
        )
        self._index = result.index + 1
        return result

    async def set_prompt(self, prompt: str, blend_chunks: int = 1) -> None:
        await self._call("set_prompt", prompt=prompt, blend_chunks=blend_chunks)

    async def set_image(self, image: Any, restart: bool = False) -> None:
        await self._call("set_image", image=image, restart=restart)

    async def clear_image(self) -> None:
        await self._call("clear_image")

    async def set_seed(self, seed: int) -> None:
        await self._call("set_seed", seed=seed)

    async def close(self) -> None:
        with contextlib.suppress(EngineRestartedError):  # its process is gone already
            await self._call("close")
