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
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from helios_serve.core.protocols import Priority
from helios_serve.core.types import StepProgress
from helios_serve.errors import HeliosError, StreamCancelledError

logger = logging.getLogger(__name__)

HANG_FILE_ENV = "HELIOS_TEST_HANG_FILE"
"""Test hook only: while the file this names exists, the engine blocks forever inside chunk 2
or later of a stream, as a deadlock in native code would. The file holds how many hangs are
left (empty: one); each hang counts one down and the last removes the file, so a restarted
engine runs normally."""
HANG_FROM_CHUNK = 2
ALIVE_INTERVAL_S = 0.5


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
    precision: str = "exact"
    compile_vae: bool = False
    log_level: int = logging.INFO
    extra_aliases: tuple[str, ...] = field(default_factory=tuple)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the closed pipe ends the process instead


def _failure(exc: BaseException) -> tuple[str, str, str | None]:
    """(code, message, param) of an error, as the parent re-raises it."""
    if isinstance(exc, HeliosError):
        return exc.code, exc.message, exc.param
    name = type(exc).__name__
    if "OutOfMemory" in name or isinstance(exc, MemoryError) or "out of memory" in str(exc):
        return "out_of_memory", "the GPU ran out of memory", None
    return "internal_error", f"{name} in the engine", None


class _Server:
    def __init__(self, conn: Connection, spec: ChildSpec) -> None:
        self._conn = conn
        self._spec = spec
        self._send_lock = threading.Lock()
        self._streams: dict[int, Any] = {}
        self._cancelled: set[int] = set()
        self._next_stream = 1

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self._conn.send(message)

    def serve(self) -> None:
        from helios_serve.engine.loader import LoadedModel
        from helios_serve.engine.service import describe, release_device_memory
        from helios_serve.engine.worker import EngineWorker

        try:
            loaded: LoadedModel = _load(self._spec)
        except HeliosError as exc:
            self.send(("load_failed", exc.message))
            return
        names = (loaded.name, *self._spec.extra_aliases)
        aliases = tuple(a for a in names if a != self._spec.served_name)
        self._model = loaded
        self._watch_long_calls(loaded.pipe)
        self.send(("ready", describe(loaded, self._spec.served_name, aliases)))
        worker = EngineWorker(on_error=release_device_memory)
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            kind = message[0]
            if kind == "stop":
                break
            if kind == "cancel":
                self._cancelled.add(message[1])
                continue
            _, call_id, op, args, priority = message
            future: Future[Any] = worker.submit(
                self._operation(call_id, op, args), Priority(priority)
            )
            future.add_done_callback(functools.partial(self._reply, call_id))
        worker.stop(timeout=5)

    def _watch_long_calls(self, pipe: Any) -> None:
        """Proof of life from inside the work that reports no steps: the VAE decodes (and
        encodes) one latent frame per module call, the text encoder runs once per prompt."""
        last = [0.0]

        def alive(*_: object) -> None:
            now = time.monotonic()
            if now - last[0] >= ALIVE_INTERVAL_S:
                last[0] = now
                with contextlib.suppress(OSError, EOFError):
                    self.send(("alive", 0))

        parts = (getattr(pipe.vae, "decoder", None), getattr(pipe.vae, "encoder", None))
        for module in (*parts, getattr(pipe, "text_encoder", None)):
            if module is not None:
                module.register_forward_hook(alive)

    def _reply(self, call_id: int, future: Future[Any]) -> None:
        self._cancelled.discard(call_id)
        exc = future.exception()
        try:
            if exc is None:
                self.send(("result", call_id, future.result()))
            else:
                if not isinstance(exc, HeliosError):
                    logger.error("engine call %d failed", call_id, exc_info=exc)
                self.send(("error", call_id, *_failure(exc)))
        except (OSError, EOFError):
            pass  # the parent is gone; the read loop ends too

    def _operation(self, call_id: int, op: str, args: dict[str, Any]) -> Callable[[], Any]:
        if op == "open":
            return lambda: self._open(args)
        if op == "close":
            return lambda: self._close(args["stream"])
        stream = self._streams.get(args["stream"])
        if stream is None:
            return _closed_stream
        if op == "next_chunk":
            return lambda: stream.next_chunk(
                self._progress(call_id),
                lambda: call_id in self._cancelled,
                prefetch=args["prefetch"],
                checkpoint=args["checkpoint"],
            )
        if op == "set_prompt":
            return lambda: stream.set_prompt(args["prompt"], args["blend_chunks"])
        if op == "set_image":
            return lambda: stream.set_image(args["image"], restart=args["restart"])
        if op == "clear_image":
            return lambda: stream.clear_image()
        if op == "set_seed":
            return lambda: stream.set_seed(args["seed"])
        raise ValueError(f"unknown engine operation {op!r}")

    def _open(self, args: dict[str, Any]) -> tuple[int, int]:
        from helios_serve.engine.state import StreamState
        from helios_serve.engine.streamer import ChunkStreamer

        resume = args["resume"]
        state = None if resume is None else StreamState.from_bytes(resume)
        streamer = ChunkStreamer(self._model, args["request"], state=state)
        stream_id = self._next_stream
        self._next_stream += 1
        self._streams[stream_id] = streamer
        return stream_id, streamer.chunk_index

    def _close(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def _progress(self, call_id: int) -> Callable[[StepProgress], None]:
        hang = os.environ.get(HANG_FILE_ENV)

        def report(progress: StepProgress) -> None:
            if hang and progress.chunk_index >= HANG_FROM_CHUNK and _take(Path(hang)):
                logger.warning("test hook %s: blocking the engine inside a chunk", HANG_FILE_ENV)
                threading.Event().wait()  # as a deadlock in native code would
            self.send(("progress", call_id, progress))

        return report


def _closed_stream() -> None:
    raise StreamCancelledError("this stream is closed")


def _take(path: Path) -> bool:
    """Count one hang down from the file (see `HANG_FILE_ENV`); False when none is left."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return False
    left = int(text) if text.isdigit() else 1
    if left > 1:
        path.write_text(str(left - 1))
    else:
        path.unlink(missing_ok=True)
    return True


def _load(spec: ChildSpec) -> Any:
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
        precision=parse_precision(spec.precision),
        decode=DecodeOptions(compile=spec.compile_vae),
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
