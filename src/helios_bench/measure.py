"""Measuring instruments: peak memory (CUDA allocator or sampled CPU RSS) and timing shims.

Memory kinds, as written to the JSON report:

- ``cuda_max_allocated``: ``torch.cuda.max_memory_allocated()`` after
  ``torch.cuda.reset_peak_memory_stats()`` at the start of the run. Absolute: it includes the
  weights already resident (``baseline_gb`` says how much that was).
- ``cpu_rss_delta``: the process' resident set size read from ``/proc/self/statm`` by a
  background thread every ~5 ms, peak minus the RSS just before the run (after ``gc.collect()``
  and glibc's ``malloc_trim``). Sampling can miss a spike shorter than the interval.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import torch

MemoryKind = Literal["cuda_max_allocated", "cpu_rss_delta"]
GB = 1024**3
_STATM = "/proc/self/statm"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that a host clock reading means "done"."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_memory(device: torch.device) -> None:
    """Free what can be freed before a baseline is taken."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    _malloc_trim()


def _malloc_trim() -> None:
    """Hand glibc's free heap pages back to the OS so the next RSS baseline is honest."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_bytes() -> int | None:
    """Resident set size of this process, or None where /proc is not available."""
    try:
        with open(_STATM, "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def memory_kind(device: torch.device) -> MemoryKind:
    return "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_delta"


class PeakMemory:
    """Context manager: the peak memory of the code it wraps, readable at any point inside."""

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device = device
        self.kind: MemoryKind = memory_kind(device)
        self.interval_s = interval_s
        self.baseline_gb = 0.0
        self._baseline = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        release_memory(self.device)
        if self.kind == "cuda_max_allocated":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_gb = float(torch.cuda.memory_allocated(self.device)) / GB
            return self
        self._baseline = rss_bytes() or 0
        self._peak = self._baseline
        self.baseline_gb = self._baseline / GB
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample_loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _sample(self) -> None:
        rss = rss_bytes()
        if rss is not None and rss > self._peak:
            self._peak = rss

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def peak_gb(self) -> float:
        """Peak so far: absolute allocated on CUDA, RSS above the baseline on CPU."""
        if self.kind == "cuda_max_allocated":
            synchronize(self.device)
            return float(torch.cuda.max_memory_allocated(self.device)) / GB
        self._sample()
        return max(0, self._peak - self._baseline) / GB


@dataclass
class CallLog:
    """(start, end) host-clock intervals of every wrapped call, in call order."""

    transformer: list[tuple[float, float]] = field(default_factory=list)
    decode: list[tuple[float, float]] = field(default_factory=list)

    def transformer_between(self, start: float, end: float) -> tuple[float, int]:
        """Seconds spent in, and number of, transformer calls that began in [start, end)."""
        calls = [(a, b) for a, b in self.transformer if start <= a < end]
        return sum(b - a for a, b in calls), len(calls)


def _timed(
    fn: Callable[..., Any], log: list[tuple[float, float]], device: torch.device
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        synchronize(device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        synchronize(device)
        log.append((start, time.perf_counter()))
        return out

    return wrapper


class TimingShims:
    """Wrap ``pipe.transformer.forward`` and ``pipe.vae.decode`` with synchronised timers.

    Works for diffusers' ``__call__`` and for the stream alike (both call these two); the
    wrappers are instance attributes and are removed (or the previous ones put back) on exit.
    """

    def __init__(self, pipe: Any, device: torch.device) -> None:
        self._targets = ((pipe.transformer, "forward"), (pipe.vae, "decode"))
        self._device = device
        self._saved: list[tuple[Any, str, Any]] = []
        self.log = CallLog()

    def __enter__(self) -> TimingShims:
        logs = (self.log.transformer, self.log.decode)
        for (obj, name), log in zip(self._targets, logs, strict=True):
            self._saved.append((obj, name, obj.__dict__.get(name)))
            setattr(obj, name, _timed(getattr(obj, name), log, self._device))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for obj, name, previous in reversed(self._saved):
            if previous is None:
                delattr(obj, name)
            else:
                setattr(obj, name, previous)
        self._saved.clear()


class NoShims:
    """Stands in for `TimingShims` where synchronising timers would change what is measured."""

    def __init__(self) -> None:
        self.log = CallLog()

    def __enter__(self) -> NoShims:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
