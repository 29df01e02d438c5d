"""`BlobStore`: where job files live durably when a job's working folder is not enough.

Keys are `/`-separated relative names (`<job_id>/video.mp4`, `<job_id>/chunks/...`). Two
implementations, chosen by the `--storage` URL: `LocalBlobStore` (a folder, e.g. a shared
mount: `file:///mnt/helios`) and `cluster.s3.S3BlobStore` (any S3-compatible store). Every call
is synchronous (for `asyncio.to_thread`) and every write is whole or absent: a reader never
sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    """Whole-file objects under string keys."""

    def put_file(self, key: str, path: Path) -> None:
        """Store the file at `path` under `key` (replacing any earlier object)."""
        ...

    def get_file(self, key: str, path: Path) -> bool:
        """Write the object to `path` atomically; False when there is no such object."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""
        ...

    def copy(self, source: str, target: str) -> bool:
        """Copy an object inside the store; False when `source` does not exist."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many went."""
        ...


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a plain blob key: {key!r}")
    return key


def copy_atomic(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a temp file beside it: fsync, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class LocalBlobStore:
    """Objects as files under `root` (a local disk, or a mount every node shares)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        copy_atomic(path, self._path(key))

    def get_file(self, key: str, path: Path) -> bool:
        source = self._path(key)
        if not source.is_file():
            return False
        copy_atomic(source, path)
        return True

    def list_keys(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        found = (
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        )
        return sorted(k for k in found if k.startswith(prefix))

    def copy(self, source: str, target: str) -> bool:
        path = self._path(source)
        if not path.is_file():
            return False
        copy_atomic(path, self._path(target))
        return True

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        return len(keys)
