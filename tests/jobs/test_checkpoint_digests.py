"""Checkpoints are verified before they are trusted (issue 24, finding 7): a flipped byte in a
saved state, a state renamed to a later chunk, a truncated segment or a flipped byte inside a
segment's `mdat` is a missing checkpoint, so those chunks are made again and the MP4 is byte
for byte an uninterrupted run's; an extension of a source whose state is damaged is not
continued from it."""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from helios_serve.core.settings import SamplingSettings
from helios_serve.engine.fake import FakeEngine
from helios_serve.jobs import digests
from helios_serve.jobs.files import STATE_NAME, VIDEO_NAME, JobFiles
from helios_serve.jobs.metrics import JobMetrics
from helios_serve.jobs.models import GenerationSpec, Job, JobStatus
from helios_serve.jobs.runner import JobRunner
from helios_serve.jobs.sqlite.store import JobStore

CHUNKS = 4
SAVED = 2
"""The interrupted run saved chunks 0..2: an intact resume starts at chunk 3."""


class KeptWork(JobFiles):
    """The real files, but every state is also kept aside and the work is not dropped at the
    end, so a test can lay out what an interrupted run leaves (its segments up to a chunk and
    the state after it)."""

    def save_checkpoint(self, job_id: str, index: int, data: bytes) -> None:
        super().save_checkpoint(job_id, index, data)
        state = self.checkpoint_path(job_id, index)
        kept = self.root.parent / "kept"
        kept.mkdir(exist_ok=True)
        for path in (state, digests.sidecar(state)):
            shutil.copyfile(path, kept / path.name)

    def remove_work(self, job_id: str) -> None:
        pass


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[JobStore, KeptWork, JobRunner]]:
    store = JobStore(tmp_path / "jobs.db")
    files = KeptWork(tmp_path / "videos")
    runner = JobRunner(store, files, FakeEngine(), JobMetrics(CollectorRegistry()))
    yield store, files, runner
    store.close()


SPEC = GenerationSpec(
    "a kite", "", 64, 64, 33 * CHUNKS, 24, 3, SamplingSettings(pyramid_steps=(1, 1, 1))
)


def _run(store: JobStore, runner: JobRunner, plant: Callable[[str], None] | None = None) -> Job:
    job = store.create(Job.new("helios-distilled", SPEC, created_at=0))
    claimed = store.claim_next()
    assert claimed is not None
    assert claimed.id == job.id
    if plant is not None:
        plant(job.id)
    asyncio.run(runner.run_claimed(claimed))
    return store.get(job.id)


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def _flip_mdat(path: Path) -> None:
    _flip(path, path.read_bytes().index(b"mdat") + 64)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rename_earlier_state(chunks: Path) -> None:
    for name in ("state-000002.safetensors", "state-000002.safetensors.sha256"):
        (chunks / name).unlink()
    for name in ("state-000001.safetensors", "state-000001.safetensors.sha256"):
        shutil.copyfile(chunks.parent / "kept" / name, chunks / name)
        (chunks / name).rename(chunks / name.replace("000001", "000002"))


def _plant(files: JobFiles, planted: Path, job_id: str) -> None:
    shutil.copytree(planted, files.chunks_dir(job_id))


DAMAGE: dict[str, Callable[[Path], None] | None] = {
    "intact": None,
    "flipped state byte": lambda c: _flip(c / "state-000002.safetensors", 5),
    "state renamed to a later chunk": _rename_earlier_state,
    "truncated segment": lambda c: _truncate(c / "chunk-000001.mp4"),
    "flipped mdat byte": lambda c: _flip_mdat(c / "chunk-000001.mp4"),
}


def test_damaged_checkpoints_are_remade_into_the_same_bytes(
    rig: tuple[JobStore, KeptWork, JobRunner], tmp_path: Path
) -> None:
    store, files, runner = rig
    reference = _run(store, runner)
    assert reference.status is JobStatus.COMPLETED
    expected = files.file_path(reference.id, VIDEO_NAME).read_bytes()
    source = files.chunks_dir(reference.id)
    for what, damage in DAMAGE.items():
        # what a run interrupted after chunk 2 leaves: segments 0..2 and the state after 2
        planted = tmp_path / "planted"
        shutil.rmtree(planted, ignore_errors=True)
        planted.mkdir()
        for k in range(SAVED + 1):
            for name in (f"chunk-{k:06d}.mp4", f"chunk-{k:06d}.mp4.sha256"):
                shutil.copyfile(source / name, planted / name)
        for name in ("state-000002.safetensors", "state-000002.safetensors.sha256"):
            shutil.copyfile(tmp_path / "kept" / name, planted / name)
        if damage is not None:
            damage(planted)
        job = _run(store, runner, functools.partial(_plant, files, planted))
        assert job.status is JobStatus.COMPLETED, (what, job.error)
        assert job.resumed_from_chunk == (SAVED + 1 if damage is None else None), what
        assert files.file_path(job.id, VIDEO_NAME).read_bytes() == expected, what


def test_an_extension_does_not_continue_a_damaged_state(
    rig: tuple[JobStore, KeptWork, JobRunner],
) -> None:
    store, files, runner = rig
    source = _run(store, runner)
    last = CHUNKS - 1
    assert files.final_state_intact(source.id, last)
    assert not files.final_state_intact(source.id, last - 1)  # another chunk's state
    state = files.file_path(source.id, STATE_NAME)
    _flip(state, 5)
    assert not files.final_state_intact(source.id, last)  # the extension falls back to v2v
    # an extension that copied the damaged state before it was checked fails cleanly
    files.link_base(source.id, "video_" + "0" * 32, (STATE_NAME, STATE_NAME + ".sha256"))
    with pytest.raises(digests.DamagedSourceError):
        files.base_state("video_" + "0" * 32, last)
    digests.sidecar(state).unlink()  # made before digests were kept: trusted as it was
    assert files.final_state_intact(source.id, last)
