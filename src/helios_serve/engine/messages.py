"""The engine pipe's vocabulary: every message between `ProcessEngine` and its child, one
dataclass each, so both ends dispatch with one `match` that mypy checks for exhaustiveness.

Parent to child: a `Call` carries one `Operation` (open a stream, or act on one); `Cancel` and
`Stop` steer. Child to parent: `Ready` / `LoadFailed` once, then `Progress`, `Frames` (a
progressive chunk's, as they are decoded), `Result` and `Failure` per call, and `Alive` from
work that reports no steps. Everything is pickled by the
pipe, so fields hold plain data (tensors only inside results and requests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from helios_serve.core.protocols import Priority
from helios_serve.core.spec import ModelInfo, StreamRequest
from helios_serve.core.types import DecodedFrames, StepProgress
from helios_serve.errors import (
    EngineFailedError,
    HeliosError,
    InvalidInputError,
    StreamCancelledError,
)

# -- operations: what a call asks the engine to do ---------------------------------------------


@dataclass(frozen=True)
class Open:
    """Open a stream (`resume`: the bytes of a saved `StreamState`); answers `Opened`."""

    request: StreamRequest
    resume: bytes | None = None


@dataclass(frozen=True)
class Opened:
    """The result of `Open`: the child's id for the stream and the chunk it starts at."""

    stream: int
    chunk_index: int


@dataclass(frozen=True)
class NextChunk:
    stream: int
    prefetch: bool = False
    checkpoint: bool = False
    progressive: bool = False
    """Send the frames as they are decoded (`Frames`); the `Result`'s chunk then has none."""


@dataclass(frozen=True)
class SetPrompt:
    stream: int
    prompt: str
    blend_chunks: int = 1


@dataclass(frozen=True)
class SetImage:
    stream: int
    image: Any
    restart: bool = False


@dataclass(frozen=True)
class ClearImage:
    stream: int


@dataclass(frozen=True)
class SetSeed:
    stream: int
    seed: int


@dataclass(frozen=True)
class Close:
    stream: int


StreamOperation = NextChunk | SetPrompt | SetImage | ClearImage | SetSeed | Close
"""An operation on a stream already open (each names it by `stream`)."""
Operation = Open | StreamOperation

# -- parent to child ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    call_id: int
    operation: Operation
    priority: Priority


@dataclass(frozen=True)
class Cancel:
    """Stop the call at its next step (a stream's `should_cancel` said so in the parent)."""

    call_id: int


@dataclass(frozen=True)
class Stop:
    """Finish: the server is stopping."""


ToChild = Call | Cancel | Stop

# -- child to parent ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    info: ModelInfo


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class Alive:
    """Proof of life from work that reports no steps (a VAE decode, the text encoder)."""


@dataclass(frozen=True)
class Progress:
    call_id: int
    progress: StepProgress


@dataclass(frozen=True)
class Frames:
    """Frames of a progressive `NextChunk`, as they are decoded (before its `Result`)."""

    call_id: int
    frames: DecodedFrames


@dataclass(frozen=True)
class Result:
    call_id: int
    value: Any


@dataclass(frozen=True)
class Failure:
    """A call that raised: the error's code, message and param, as the parent re-raises it."""

    call_id: int
    code: str
    message: str
    param: str | None = None

    @classmethod
    def of(cls, call_id: int, exc: BaseException) -> Failure:
        if isinstance(exc, HeliosError):
            return cls(call_id, exc.code, exc.message, exc.param)
        name = type(exc).__name__
        if "OutOfMemory" in name or isinstance(exc, MemoryError) or "out of memory" in str(exc):
            return cls(call_id, "out_of_memory", "the GPU ran out of memory")
        return cls(call_id, "internal_error", f"{name} in the engine")

    def error(self) -> HeliosError:
        """The parent-side error: the same class where the caller acts on it."""
        if self.code == StreamCancelledError.code:
            return StreamCancelledError(self.message, param=self.param)
        if self.code == InvalidInputError.code:
            return InvalidInputError(self.message, param=self.param)
        return EngineFailedError(self.message, code=self.code, param=self.param)


FromChild = Ready | LoadFailed | Alive | Progress | Frames | Result | Failure
