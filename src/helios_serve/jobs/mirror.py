"""`JobMirror`: a job's working folder kept in step with a `BlobStore`, for cluster mode.

The engine, the encoder and the assembly work on local files (`JobFiles`); the mirror copies
what must outlive this machine to the blob store, under `<job_id>/<the same relative path>`,
and brings it back on whichever machine needs it next: a worker resuming a job (its chunk
segments and latest state), a gateway serving content (one file, fetched once), an extension
(its source's files copied inside the store). Single-node mode has no mirror: the working
folder is the store.
"""

from __future__ import annotations

from pathlib import Path

from helios_serve.jobs import digests
from helios_serve.jobs.blobs import BlobStore
from helios_serve.jobs.files import (
    BASE_DIR,
    CHUNKS_DIR,
    SPRITESHEET_NAME,
    STATE_DIGEST_NAME,
    STATE_NAME,
    TAIL_NAME,
    THUMBNAIL_NAME,
    VIDEO_NAME,
    JobFiles,
)

FINAL_NAMES = (
    VIDEO_NAME,
    SPRITESHEET_NAME,
    TAIL_NAME,
    STATE_NAME,
    STATE_DIGEST_NAME,
    THUMBNAIL_NAME,
)
"""What a finished job keeps; the video goes last, so a listed video has its companions."""


class JobMirror:
    """Copies between `files` (this machine) and `blobs` (every machine)."""

    def __init__(self, files: JobFiles, blobs: BlobStore) -> None:
        self.files = files
        self.blobs = blobs

    def _relative(self, job_id: str, path: Path) -> str:
        return path.relative_to(self.files.job_dir(job_id)).as_posix()

    def push(self, job_id: str, paths: list[Path]) -> None:
        """Upload local files of the job (in the order given)."""
        for path in paths:
            self.blobs.put_file(f"{job_id}/{self._relative(job_id, path)}", path)

    def push_inputs(self, job_id: str) -> None:
        """Everything a new job starts with (its reference upload, an extension's base)."""
        folder = self.files.job_dir(job_id)
        if folder.is_dir():
            self.push(job_id, sorted(p for p in folder.rglob("*") if p.is_file()))

    def push_chunk(self, job_id: str, index: int, *, trimmed: bool, thumbnail: bool) -> None:
        """Chunk `index` as `assembly.save_chunk` left it: segment(s), thumbnail, then state
        (the same order: a state in the store always has its segments there), then drop the
        state before it."""
        files = self.files
        paths = [files.segment_path(job_id, index)]
        if trimmed:
            paths.append(files.segment_path(job_id, index, trimmed=True))
        paths = [p for path in paths for p in (path, digests.sidecar(path))]
        if thumbnail:
            paths.append(files.thumbnail_path(job_id))
        state = files.checkpoint_path(job_id, index)
        paths += [state, digests.sidecar(state)]
        self.push(job_id, paths)
        if index > 0:
            older = self._relative(job_id, files.checkpoint_path(job_id, index - 1))
            self.blobs.delete_prefix(f"{job_id}/{older}")

    def push_final(self, job_id: str) -> None:
        """The finished video and what stays with it."""
        names = self.files.present(job_id, FINAL_NAMES)
        self.push(job_id, [self.files.file_path(job_id, n) for n in names])

    def pull_all(self, job_id: str) -> int:
        """Bring every stored file of the job that is not here yet; returns how many came."""
        fetched = 0
        folder = self.files.job_dir(job_id)
        for key in self.blobs.list_keys(f"{job_id}/"):
            target = folder / key[len(job_id) + 1 :]
            if not target.is_file() and self.blobs.get_file(key, target):
                fetched += 1
        return fetched

    def fetch(self, job_id: str, name: str) -> bool:
        """Make sure the job file `name` is here; False when the store has none either."""
        path = self.files.file_path(job_id, name)
        return path.is_file() or self.blobs.get_file(f"{job_id}/{name}", path)

    def present(self, job_id: str, names: tuple[str, ...]) -> tuple[str, ...]:
        """Which of `names` the store has for the job."""
        stored = set(self.blobs.list_keys(f"{job_id}/"))
        return tuple(n for n in names if f"{job_id}/{n}" in stored)

    def copy_base(self, source_id: str, job_id: str, names: tuple[str, ...]) -> tuple[str, ...]:
        """`JobFiles.link_base` inside the store: the source's files become the job's base."""
        return tuple(
            n for n in names if self.blobs.copy(f"{source_id}/{n}", f"{job_id}/{BASE_DIR}/{n}")
        )

    def remove_work(self, job_id: str) -> None:
        """Drop the stored chunk segments, intermediate states and base copies."""
        for folder in (CHUNKS_DIR, BASE_DIR):
            self.blobs.delete_prefix(f"{job_id}/{folder}/")

    def remove(self, job_id: str) -> None:
        """Delete every stored file of the job."""
        self.blobs.delete_prefix(f"{job_id}/")
