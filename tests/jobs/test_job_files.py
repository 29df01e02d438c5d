"""JobFiles: per-job paths, atomic writes, removal, the startup sweep and traversal guards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.models import JobNotFoundError, new_job_id


@pytest.fixture
def files(tmp_path: Path) -> JobFiles:
    return JobFiles(tmp_path / "videos")


def test_paths_live_in_the_job_directory_which_is_created_lazily(files: JobFiles) -> None:
    job_id = new_job_id()
    home = files.root / job_id
    assert files.video_path(job_id) == home / "video.mp4"
    assert files.thumbnail_path(job_id) == home / "thumbnail.jpg"
    assert files.spritesheet_path(job_id) == home / "spritesheet.jpg"
    assert files.reference_path(job_id, "reference.png") == home / "reference.png"
    assert not home.exists()  # reading paths never creates anything
    assert files.ensure_dir(job_id) == home
    assert home.is_dir()


def test_save_reference_is_atomic_and_leaves_no_temp(files: JobFiles) -> None:
    job_id = new_job_id()
    name = files.save_reference(job_id, b"\x89PNG data", ".png")
    assert name == "reference.png"
    assert files.reference_path(job_id, name).read_bytes() == b"\x89PNG data"
    assert files.save_reference(job_id, b"second", ".png") == name
    assert [p.name for p in (files.root / job_id).iterdir()] == [name]
    assert files.reference_path(job_id, name).read_bytes() == b"second"
    for bad in ("png", ".PNG/..", "/x", ".a/b", ""):
        with pytest.raises(ValueError, match="suffix"):
            files.save_reference(job_id, b"x", bad)


def test_write_bytes(files: JobFiles) -> None:
    job_id = new_job_id()
    path = files.write_bytes(job_id, "thumbnail.jpg", b"jpeg")
    assert path == files.thumbnail_path(job_id)
    assert path.read_bytes() == b"jpeg"


def test_remove(files: JobFiles) -> None:
    job_id = new_job_id()
    files.save_reference(job_id, b"x", ".mp4")
    files.remove(job_id)
    assert not (files.root / job_id).exists()
    files.remove(job_id)  # already gone: fine
    files.remove(new_job_id())  # never existed: fine


TRAVERSALS = [
    "../etc",
    "video_../../x",
    "/etc/passwd",
    "/tmp",
    "..",
    ".",
    "",
    "video_" + "a" * 32 + "/../../x",
    "video_" + "a" * 32 + "\n",
]


@pytest.mark.parametrize("job_id", TRAVERSALS)
def test_malformed_ids_never_become_paths(files: JobFiles, job_id: str) -> None:
    actions: list[Callable[[], object]] = [
        lambda: files.job_dir(job_id),
        lambda: files.ensure_dir(job_id),
        lambda: files.video_path(job_id),
        lambda: files.thumbnail_path(job_id),
        lambda: files.spritesheet_path(job_id),
        lambda: files.reference_path(job_id, "reference.png"),
        lambda: files.save_reference(job_id, b"x", ".png"),
        lambda: files.write_bytes(job_id, "thumbnail.jpg", b"x"),
        lambda: files.remove(job_id),
    ]
    for action in actions:
        with pytest.raises(JobNotFoundError):
            action()
    assert not files.root.exists()


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "/etc/passwd", "..", ".hidden", "", "x\\y", "x.part", "y.tmp"]
)
def test_file_names_must_be_plain(files: JobFiles, name: str) -> None:
    with pytest.raises(ValueError, match="file name"):
        files.reference_path(new_job_id(), name)


def test_sweep_removes_interrupted_writes_only(files: JobFiles) -> None:
    assert files.sweep_temp() == 0  # no root yet
    a, b = new_job_id(), new_job_id()
    for job_id in (a, b):
        files.ensure_dir(job_id)
    keep = [files.video_path(a), files.thumbnail_path(a), files.root / a / "reference.png"]
    junk = [
        files.root / a / "video.mp4.part",
        files.root / a / "video.npy.part.short",
        files.root / b / ".reference.png.x1y2.tmp",
    ]
    for path in keep + junk:
        path.write_bytes(b"x")
    (files.root / "not-a-job").mkdir()
    (files.root / "not-a-job" / "x.part").write_bytes(b"x")
    assert files.sweep_temp() == 3
    assert all(p.exists() for p in keep)
    assert not any(p.exists() for p in junk)
    assert (files.root / "not-a-job" / "x.part").exists()  # only job directories are swept
    assert files.job_ids_on_disk() == sorted([a, b])
