"""One engine process and the pipe to it: started with `spawn`, ready once its model loaded."""

from __future__ import annotations

import multiprocessing

from helios_serve.core.spec import ModelInfo
from helios_serve.engine.child import ChildSpec, main
from helios_serve.engine.messages import FromChild, LoadFailed, Ready, ToChild
from helios_serve.errors import CheckpointError


class EngineChild:
    """A started engine process; `send`/`recv` speak `engine.messages`."""

    def __init__(self, spec: ChildSpec) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA
        self.conn, child_end = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=main, args=(child_end, spec), name="helios-engine")
        self.process.start()
        child_end.close()

    def send(self, message: ToChild) -> None:
        self.conn.send(message)

    def recv(self) -> FromChild:
        message: FromChild = self.conn.recv()
        return message

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()

    def first_message(self) -> Ready | LoadFailed:
        """Wait for `Ready` (or `LoadFailed`); an exit before it is a failure too."""
        while True:
            if self.conn.poll(0.5):
                try:
                    message = self.recv()
                except (EOFError, OSError):
                    break
                if isinstance(message, Ready | LoadFailed):
                    return message
                continue  # proof of life from the text encoder while it loads
            if not self.process.is_alive():
                break
        return LoadFailed(f"the engine process exited ({self.process.exitcode})")


def spawn_child(spec: ChildSpec) -> tuple[EngineChild, ModelInfo]:
    """A new engine process with its model loaded (blocking); `CheckpointError` if it fails."""
    child = EngineChild(spec)
    message = child.first_message()
    if isinstance(message, LoadFailed):
        child.kill()
        raise CheckpointError(message.message)
    return child, message.info
