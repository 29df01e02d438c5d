"""The engine process: loads the model and runs stream operations sent by `ProcessEngine`.

One duplex pipe carries everything. The main thread reads requests and hands them to the
single `EngineWorker` thread (by priority, as in-process); replies, progress and errors go back
on the same pipe. Progress messages are also the parent's proof of life: a call that stops
reporting is how a hang is seen. The process dies with its parent (PR_SET_PDEATHSIG on Linux,
end of pipe elsewhere), so a killed server leaves no engine holding the GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, assert_never

from helios_serve.core.protocols import Priority
from helios_serve.core.settings import GuidanceMode
from helios_serve.core.step_cache import StepCacheSettings
from helios_serve.core.types import ChunkResult, DecodedFrames, StepProgress
from helios_serve.engine.messages import (
    Alive,
    Call,
    Cancel,
    ClearImage,
    Close,
    Failure,
    Frames,
    FromChild,
    LoadFailed,
    NextChunk,
    Open,
    Opened,
    Operation,
    Progress,
    Ready,
    Result,
    SetImage,
    SetPrompt,
    SetSeed,
    Stop,
    ToChild,
)
from helios_serve.engine.parallel.layout import ParallelLayout
from helios_serve.errors import HeliosError, StreamCancelledError

logger = logging.getLogger(__name__)

ALIVE_INTERVAL_S = 0.5
StepHook = Callable[[StepProgress], None]


@dataclass(frozen=True)
class ChildSpec:
    """What the engine process loads: everything `helios serve` was told about the model."""

    model: str
    data_dir: Path
    served_name: str
    device: str | None = None
    vae_dtype: str = "float32"
    attention_backend: str = "native"
    compile: bool = False
    guidance: GuidanceMode = "sequential"
    step_cache: StepCacheSettings | None = None
    precision: str = "exact"
    compile_vae: bool = False
    log_level: int = logging.INFO
    extra_aliases: tuple[str, ...] = field(default_factory=tuple)
    layout: ParallelLayout | None = None
    """Several devices for this engine: the engine process is rank 0 and starts the others."""
    step_hook: StepHook | None = None
    """A fault-injection seam for tests, None in production: runs in the engine process at
    every denoising step, before the step is reported (a test blocks here to play a hang).
    Pickled to the child, so a module-level function or an instance of a module-level class."""


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the closed pipe ends the process instead


class _Server:
    def __init__(self, conn: Connection, spec: ChildSpec) -> None:
        self._conn = conn
        self._spec = spec
        self._send_lock = threading.Lock()
        self._streams: dict[int, Any] = {}
        self._cancelled: set[int] = set()
        self._next_stream = 1

    def send(self, message: FromChild) -> None:
        with self._send_lock:
            self._conn.send(message)

    def serve(self) -> None:
        from helios_serve.engine.loader import LoadedModel
        from helios_serve.engine.service import describe, release_device_memory
        from helios_serve.engine.worker import EngineWorker

        try:
            loaded: LoadedModel = load_model_of(self._spec)
        except HeliosError as exc:
            self.send(LoadFailed(exc.message))
            return
        names = (loaded.name, *self._spec.extra_aliases)
        aliases = tuple(a for a in names if a != self._spec.served_name)
        self._model = loaded
        self._watch_long_calls(loaded.pipe)
        self.send(Ready(describe(loaded, self._spec.served_name, aliases)))
        worker = EngineWorker(on_error=release_device_memory)
        while True:
            try:
                message: ToChild = self._conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            match message:
                case Stop():
                    break
                case Cancel(call_id):
                    self._cancelled.add(call_id)
                case Call(call_id, operation, priority):
                    future: Future[Any] = worker.submit(
                        self._operation(call_id, operation, priority), priority
                    )
                    future.add_done_callback(functools.partial(self._reply, call_id))
                case _:
                    assert_never(message)
        worker.stop(timeout=5)
        if loaded.parallel is not None:
            loaded.parallel.close()

    def _watch_long_calls(self, pipe: Any) -> None:
        """Proof of life from inside the work that reports no steps: the VAE decodes (and
        encodes) one latent frame per module call, the text encoder runs once per prompt."""
        last = [0.0]

        def alive(*_: object) -> None:
            now = time.monotonic()
            if now - last[0] >= ALIVE_INTERVAL_S:
                last[0] = now
                with contextlib.suppress(OSError, EOFError):
                    self.send(Alive())

        parts = (getattr(pipe.vae, "decoder", None), getattr(pipe.vae, "encoder", None))
        for module in (*parts, getattr(pipe, "text_encoder", None)):
            if module is not None:
                module.register_forward_hook(alive)

    def _reply(self, call_id: int, future: Future[Any]) -> None:
        self._cancelled.discard(call_id)
        exc = future.exception()
        try:
            if exc is None:
                self.send(Result(call_id, future.result()))
            else:
                if not isinstance(exc, HeliosError):
                    logger.error("engine call %d failed", call_id, exc_info=exc)
                self.send(Failure.of(call_id, exc))
        except (OSError, EOFError):
            pass  # the parent is gone; the read loop ends too

    def _operation(self, call_id: int, op: Operation, priority: Priority) -> Callable[[], Any]:
        if isinstance(op, Open):
            return lambda: self._open(op, priority)
        if isinstance(op, Close):  # closing a stream already gone is no error
            return lambda: self._close(op.stream)
        stream = self._streams.get(op.stream)
        if stream is None:
            return _closed_stream
        match op:
            case NextChunk(_, prefetch, checkpoint, progressive):
                return lambda: self._next_chunk(call_id, stream, prefetch, checkpoint, progressive)
            case SetPrompt(_, prompt, blend_chunks):
                return lambda: stream.set_prompt(prompt, blend_chunks)
            case SetImage(_, image, restart):
                return lambda: stream.set_image(image, restart=restart)
            case ClearImage():
                return lambda: stream.clear_image()
            case SetSeed(_, seed):
                return lambda: stream.set_seed(seed)
            case _:
                assert_never(op)

    def _next_chunk(
        self, call_id: int, stream: Any, prefetch: bool, checkpoint: bool, progressive: bool
    ) -> ChunkResult:
        """A chunk; progressive: its frames go out as `Frames` as they are decoded, and the
        result goes without them (the parent has them already)."""

        def hand_over(frames: DecodedFrames) -> None:
            self.send(Frames(call_id, frames))

        result: ChunkResult = stream.next_chunk(
            self._progress(call_id),
            lambda: call_id in self._cancelled,
            prefetch=prefetch,
            checkpoint=checkpoint,
            on_frames=hand_over if progressive else None,
        )
        return replace(result, frames=result.frames[:0]) if progressive else result

    def _open(self, op: Open, priority: Priority) -> Opened:
        from helios_serve.engine.state import StreamState
        from helios_serve.engine.streamer import ChunkStreamer, decode_groups_for

        state = None if op.resume is None else StreamState.from_bytes(op.resume)
        streamer = ChunkStreamer(
            self._model, op.request, state=state, decode_groups=decode_groups_for(priority)
        )
        stream_id = self._next_stream
        self._next_stream += 1
        self._streams[stream_id] = streamer
        return Opened(stream_id, streamer.chunk_index)

    def _close(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def _progress(self, call_id: int) -> Callable[[StepProgress], None]:
        hook = self._spec.step_hook

        def report(progress: StepProgress) -> None:
            if hook is not None:
                hook(progress)
            self.send(Progress(call_id, progress))

        return report


def _closed_stream() -> None:
    raise StreamCancelledError("this stream is closed")


def load_model_of(spec: ChildSpec) -> Any:
    """The model `spec` asks for, loaded in this process (the engine process, or the caller's
    own for `helios generate` and `--engine-isolation thread`)."""
    import torch

    from helios_serve.engine.loader import LoadOptions, load_model, quiet_libraries
    from helios_serve.engine.precision import parse_precision
    from helios_serve.engine.vae_decode import DecodeOptions

    quiet_libraries()

    options = LoadOptions(
        device=spec.device,
        vae_dtype=torch.bfloat16 if spec.vae_dtype == "bfloat16" else torch.float32,
        attention_backend=spec.attention_backend,
        compile=spec.compile,
        guidance=spec.guidance,
        step_cache=spec.step_cache,
        precision=parse_precision(spec.precision),
        decode=DecodeOptions(compile=spec.compile_vae),
        layout=spec.layout,
    )
    return load_model(spec.model, spec.data_dir, options)


def main(conn: Connection, spec: ChildSpec) -> None:
    """The engine process's entry point (started with the `spawn` method)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the engine stops
    logging.basicConfig(
        level=spec.log_level,
        format="%(asctime)s %(levelname)s engine[%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _Server(conn, spec).serve()
    finally:
        conn.close()
