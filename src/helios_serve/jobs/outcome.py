"""What a job's run leaves behind: the seconds per stage it took, and when it fails, a stable
code and a message a client may read."""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass
from typing import Any

from helios_serve.core.types import ChunkTimings
from helios_serve.errors import HeliosError


def safe_message(exc: BaseException, code: str, job_id: str) -> str:
    """What a client may read about a failure: our own errors' messages (written for it),
    else a sentence per code; never an exception's text, a path or a file name."""
    if isinstance(exc, HeliosError):
        return exc.message
    if code == "out_of_memory":
        return "The engine ran out of memory while making this video; try a smaller size."
    if code == "insufficient_storage":
        return "The server's disk filled up while making this video; try again later."
    return f"The server had an error while making this video (the log has it under {job_id})."


def failure_code(exc: BaseException) -> str:
    """A stable string code for an exception that escaped the engine."""
    if isinstance(exc, HeliosError):
        return exc.code
    name = type(exc).__name__
    if "OutOfMemory" in name or isinstance(exc, MemoryError) or "out of memory" in str(exc):
        return "out_of_memory"
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or (
        isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
    ):
        return "insufficient_storage"
    return "internal_error"


@dataclass
class RunStats:
    """Seconds per stage over the chunks this run made, and the engine's peak memory."""

    denoise_s: float = 0.0
    decode_s: float = 0.0
    save_s: float = 0.0
    assemble_s: float = 0.0
    peak_memory_mb: float | None = None

    def add(self, timings: ChunkTimings, save_s: float, extras: dict[str, float]) -> None:
        self.denoise_s += timings.transformer_s
        self.decode_s += timings.decode_s
        self.save_s += save_s
        peak = extras.get("peak_memory_mb")
        if peak is not None:
            self.peak_memory_mb = max(peak, self.peak_memory_mb or 0.0)

    def to_json(self) -> dict[str, Any]:
        stages = {
            "denoise": self.denoise_s,
            "vae_decode": self.decode_s,
            "encode_and_save": self.save_s,
            "assemble": self.assemble_s,
        }
        peak = None if self.peak_memory_mb is None else round(self.peak_memory_mb, 1)
        return {
            "stage_durations": {k: round(v, 3) for k, v in stages.items()},
            "peak_memory_mb": peak,
        }
