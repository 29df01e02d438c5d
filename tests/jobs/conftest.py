"""Fixtures for the job domain: specs, jobs and a store in a temp directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helios_serve.core.settings import SamplingSettings
from helios_serve.jobs.models import GenerationSpec, Job
from helios_serve.jobs.sqlite.store import JobStore


class FakeClock:
    """A settable clock, so timestamps and heartbeat ages are exact in tests."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _spec(**changes: Any) -> GenerationSpec:
    values: dict[str, Any] = {
        "prompt": "a red fox runs through snow",
        "negative_prompt": "blurry",
        "width": 640,
        "height": 384,
        "num_frames": 99,
        "fps": 24,
        "seed": 42,
        "settings": SamplingSettings(pyramid_steps=(20, 20, 20), use_cfg_zero_star=True),
    }
    values.update(changes)
    return GenerationSpec(**values)


@pytest.fixture
def make_spec() -> Callable[..., GenerationSpec]:
    """`make_spec(**changes)` → a typical fully resolved spec with `changes` applied."""
    return _spec


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "jobs.sqlite3"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[JobStore]:
    s = JobStore(db_path, clock=clock)
    yield s
    s.close()


@pytest.fixture
def add_job(store: JobStore, clock: FakeClock) -> Callable[..., Job]:
    """`add_job(**spec_changes)` → a queued job stored with the clock's time as created_at."""

    def add(**changes: Any) -> Job:
        return store.create(Job.new("helios-distilled", _spec(**changes), created_at=int(clock())))

    return add
