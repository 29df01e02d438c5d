"""`JobFiles`: where each job's video, images and uploaded reference live on disk.

Every path is built from an id that passed `is_valid_job_id` and a file name this module
checks, never from client text, so no request can reach outside `root/<job_id>/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

from helios_serve.jobs import digests
from helios_serve.jobs.models import JobNotFoundError, is_valid_job_id

VIDEO_NAME = "video.mp4"
"""The MP4's name in its job directory, also what clients see as `file_name`."""
THUMBNAIL_NAME = "thumbnail.jpg"
SPRITESHEET_NAME = "spritesheet.jpg"
REFERENCE_STEM = "reference"
STATE_NAME = "state.safetensors"
"""The stream's state after the last chunk, kept with the video so it can be extended."""
STATE_DIGEST_NAME = STATE_NAME + ".sha256"
"""The final state's digest (`digests`), checked before an extension continues from it."""
TAIL_NAME = "tail.mp4"
"""The last chunk whole (the MP4 ends trimmed to 4k+1 frames): what an extension joins on."""
CHUNKS_DIR = "chunks"
"""A running job's segments and latest stream state; gone once the video is assembled."""
BASE_DIR = "base"
"""An extension's copy of what it continues (the source's video, tail, state, thumbnail)."""

# Leftovers of interrupted atomic writes: media.encode writes `<name>.part` (and, for short
# .npy streams, `<name>.part.short`); `save_reference` writes `*.tmp`.
TEMP_SUFFIXES = (".part", ".part.short", ".tmp")

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")


def _check_name(name: str) -> str:
    if not _FILE_NAME.fullmatch(name) or name.endswith(TEMP_SUFFIXES):
        raise ValueError(f"not a plain job file name: {name!r}")
    return name


def _write_atomic(target: Path, data: bytes) -> None:
    """Write `target` through a temp file in its folder: fsync, then rename over it."""
    # A unique temp name in the same directory: the rename is atomic and two writers
    # cannot clobber each other's half-written file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            # fsync before anyone records the file (e.g. the job row commits): a crash
            # must not leave a recorded file that is empty.
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class JobFiles:
    """One directory per job under `root`, created on first write, removed with the job."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def job_dir(self, job_id: str) -> Path:
        """`root/<job_id>` (not created); unknown-shaped ids raise `JobNotFoundError`."""
        if not is_valid_job_id(job_id):
            raise JobNotFoundError(f"no video with id {job_id!r}", param="video_id")
        return self.root / job_id

    def ensure_dir(self, job_id: str) -> Path:
        """The job's directory, created if missing (writers need it to exist)."""
        path = self.job_dir(job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def file_path(self, job_id: str, name: str) -> Path:
        """A named file in the job's directory; `name` must be a plain file name."""
        return self.job_dir(job_id) / _check_name(name)

    def video_path(self, job_id: str) -> Path:
        return self.file_path(job_id, VIDEO_NAME)

    def thumbnail_path(self, job_id: str) -> Path:
        return self.file_path(job_id, THUMBNAIL_NAME)

    def spritesheet_path(self, job_id: str) -> Path:
        return self.file_path(job_id, SPRITESHEET_NAME)

    def reference_path(self, job_id: str, name: str) -> Path:
        return self.file_path(job_id, name)

    def save_reference(self, job_id: str, data: bytes, suffix: str) -> str:
        """Store an upload as `reference<suffix>`; returns the file name for the spec."""
        if not _SUFFIX.fullmatch(suffix):
            raise ValueError(f"not a plain file suffix: {suffix!r}")
        name = REFERENCE_STEM + suffix
        self.write_bytes(job_id, name, data)
        return name

    def write_bytes(self, job_id: str, name: str, data: bytes) -> Path:
        """Write a job file atomically and durably (temp file, fsync, rename)."""
        target = self.ensure_dir(job_id) / _check_name(name)
        _write_atomic(target, data)
        return target

    def remove(self, job_id: str) -> None:
        """Delete the job's directory and everything in it; a missing one is fine."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.job_dir(job_id))

    def job_ids_on_disk(self) -> list[str]:
        """Ids that have a directory, e.g. to remove those whose job row is gone."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if is_valid_job_id(p.name) and p.is_dir())

    def sweep_temp(self) -> int:
        """Remove leftovers of interrupted writes; returns how many files went.

        Call at startup, before any worker writes: a live writer's temp file would go too.
        """
        removed = 0
        for job_id in self.job_ids_on_disk():
            for path in (self.root / job_id).rglob("*"):
                if path.name.endswith(TEMP_SUFFIXES) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    # -- chunk checkpoints ------------------------------------------------------------------

    def chunks_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / CHUNKS_DIR

    def segment_path(self, job_id: str, index: int, *, trimmed: bool = False) -> Path:
        """Chunk `index`'s own MP4 (`trimmed`: the last chunk cut to the delivered length)."""
        suffix = ".trimmed.mp4" if trimmed else ".mp4"
        return self.chunks_dir(job_id) / f"chunk-{int(index):06d}{suffix}"

    def checkpoint_path(self, job_id: str, index: int) -> Path:
        return self.chunks_dir(job_id) / f"state-{int(index):06d}.safetensors"

    def base_path(self, job_id: str, name: str) -> Path:
        return self.job_dir(job_id) / BASE_DIR / _check_name(name)

    def ensure_base_dir(self, job_id: str) -> Path:
        """The job's base folder (an extension's copy of what it continues), created."""
        path = self.job_dir(job_id) / BASE_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_checkpoint(self, job_id: str, index: int, data: bytes) -> None:
        """Publish the stream state after chunk `index` (durably), then drop older ones."""
        path = self.checkpoint_path(job_id, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
        digests.seal(path, digests.state_label(index))
        for old in path.parent.glob("state-*.safetensors"):
            if old.name < path.name:
                digests.remove(old)

    def resume_point(self, job_id: str, first_chunk: int) -> tuple[int, bytes] | None:
        """The latest saved state that, with every segment up to it, is intact: (chunk, state).

        A crash between a segment and its state leaves the segment only: that chunk is then
        made again (the same frames, the same bytes). So is everything after a state or segment
        that fails its digest (`digests`): damaged, truncated, renamed or half written.
        """
        folder = self.chunks_dir(job_id)
        if not folder.is_dir():
            return None
        saved = sorted(folder.glob("state-*.safetensors"), reverse=True)
        for path in saved:
            index = int(path.name[len("state-") : -len(".safetensors")])
            if self._chunks_intact(job_id, first_chunk, index):
                data = path.read_bytes()
                if digests.intact(path, digests.state_label(index)):  # unchanged since read
                    return index, data
        return None

    def _chunks_intact(self, job_id: str, first_chunk: int, index: int) -> bool:
        state = self.checkpoint_path(job_id, index)
        if not digests.intact(state, digests.state_label(index)):
            return False
        trimmed = self.segment_path(job_id, index, trimmed=True)
        if trimmed.exists() and not digests.intact(
            trimmed, digests.segment_label(index, trimmed=True)
        ):
            return False
        return all(
            digests.intact(self.segment_path(job_id, k), digests.segment_label(k))
            for k in range(first_chunk, index + 1)
        )

    def final_state_intact(self, job_id: str, last_chunk: int) -> bool:
        """The finished job's state is the one its last chunk saved (or predates digests)."""
        path = self.file_path(job_id, STATE_NAME)
        return digests.unverified(path) or digests.intact(path, digests.state_label(last_chunk))

    def base_state(self, job_id: str, last_chunk: int) -> bytes:
        """An extension's copy of its source's final state, checked (`DamagedSourceError`)."""
        path = self.base_path(job_id, STATE_NAME)
        data = path.read_bytes()
        if not (digests.unverified(path) or digests.intact(path, digests.state_label(last_chunk))):
            raise digests.DamagedSourceError(
                "The video this extends has a damaged saved state; extend it again (it is then "
                "continued from its frames)."
            )
        return data

    def link_base(self, source_id: str, job_id: str, names: tuple[str, ...]) -> tuple[str, ...]:
        """Hard-link (or copy) the source's files `names` into the job's base folder; returns
        the names that existed. The extension then no longer needs its source."""
        target = self.job_dir(job_id) / BASE_DIR
        target.mkdir(parents=True, exist_ok=True)
        found = []
        for name in names:
            source = self.file_path(source_id, name)
            if not source.is_file():
                continue
            dest = target / _check_name(name)
            try:
                os.link(source, dest)
            except OSError:  # another filesystem, or links not allowed
                shutil.copyfile(source, dest)
            found.append(name)
        return tuple(found)

    def webp_copy(self, job_id: str, name: str) -> Path:
        """A WebP twin of a JPEG job file, made once on first request."""
        from PIL import Image

        source = self.file_path(job_id, name)
        target = source.with_suffix(".webp")
        if not target.is_file():
            with Image.open(source) as image:
                buffer = io.BytesIO()
                image.save(buffer, format="WEBP", quality=85)
            _write_atomic(target, buffer.getvalue())
        return target

    def present(self, job_id: str, names: tuple[str, ...]) -> tuple[str, ...]:
        """Which of `names` the job has."""
        return tuple(n for n in names if self.file_path(job_id, n).is_file())

    def sha256(self, job_id: str, name: str) -> str:
        """Hex SHA-256 of a job file, read in blocks."""
        digest = hashlib.sha256()
        with self.file_path(job_id, name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def publish(self, source: Path, job_id: str, name: str) -> Path:
        """Move a finished file into the job's folder under `name` (atomic rename)."""
        target = self.file_path(job_id, name)
        os.replace(source, target)
        return target

    def job_ids_with_work(self) -> list[str]:
        """Jobs that have chunk segments or extension bases on disk."""
        return [
            job_id
            for job_id in self.job_ids_on_disk()
            if any((self.root / job_id / d).is_dir() for d in (CHUNKS_DIR, BASE_DIR))
        ]

    def remove_work(self, job_id: str) -> None:
        """Drop the chunk segments, intermediate states and base copies of a finished job."""
        for folder in (CHUNKS_DIR, BASE_DIR):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.job_dir(job_id) / folder)
