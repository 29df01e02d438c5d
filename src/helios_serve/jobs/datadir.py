"""The data directory at start: one server at a time, a usable jobs database, nothing lost.

- `DataDirLock`: an exclusive `flock` on `<data-dir>/helios.lock`, held for the server's life.
  A second `helios serve` on the same folder would re-queue the first one's running job and
  both would write its files; it is refused instead, naming the holder's PID. (The lock is the
  kernel's: it goes with the process, `kill -9` included, so it can never be left stale.)
- `open_store`: a truncated, garbage or unreadable `jobs.db` and a read-only folder become one
  line that says what to do, not a traceback.
- `check_not_lost`: a missing or zero-byte database next to existing job folders means the
  database was lost or replaced; starting would hide every video, so the start is refused.
- `sweep_orphans`: folders with no job row (a `kill -9` during a create) are removed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from helios_serve.errors import HeliosError
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.models import JobNotFoundError
from helios_serve.jobs.records import JobStoreError
from helios_serve.jobs.sqlite.store import JobStore

logger = logging.getLogger(__name__)

LOCK_NAME = "helios.lock"
DB_NAME = "jobs.db"


class DataDirError(HeliosError):
    """The data directory cannot be used; the message says why and what to do."""

    code = "data_dir_unusable"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._file: IO[str] | None = None

    def acquire(self) -> Self:
        path = self.data_dir / LOCK_NAME
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            handle = path.open("a+")
        except OSError as exc:
            raise DataDirError(
                f"cannot use the data directory {self.data_dir}: {exc.strerror} (give "
                "--data-dir a folder this user can write)"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DataDirError(
                f"{self.data_dir} is in use by another helios serve (pid {holder}); stop it or "
                "give this one another --data-dir (a cluster runs many workers safely)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def open_store(data_dir: Path) -> JobStore:
    """The jobs database, or a `DataDirError` that says what is wrong with it."""
    path = data_dir / DB_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        return JobStore(path)
    except JobStoreError:
        raise
    except sqlite3.DatabaseError as exc:
        raise DataDirError(
            f"{path} is not a usable jobs database ({exc}); restore it from a backup, or move "
            "it away to start with an empty job list"
        ) from None
    except OSError as exc:
        raise DataDirError(
            f"cannot open {path}: {exc.strerror} (the data directory must be writable)"
        ) from None


def database_is_new(data_dir: Path) -> bool:
    """True when `jobs.db` is absent or zero bytes: opening it starts an empty job list."""
    path = data_dir / DB_NAME
    return not path.exists() or path.stat().st_size == 0


def check_not_lost(store: JobStore, files: JobFiles, database_was_new: bool) -> None:
    """Refuse a new (absent or zero-byte) database beside existing job folders. (An existing
    database's folders without rows are orphans of an interrupted create: `sweep_orphans`.)"""
    folders = files.job_ids_on_disk()
    if database_was_new and folders:
        raise DataDirError(
            f"{store.path} holds no jobs but {files.root} holds {len(folders)} job folders: the "
            "database was lost or replaced. Restore it, or move the folder away to start fresh"
        )


def sweep_orphans(store: JobStore, files: JobFiles) -> int:
    """Remove job folders that no job row owns; returns how many went."""
    removed = 0
    for job_id in files.job_ids_on_disk():
        try:
            store.get(job_id)
        except JobNotFoundError:
            files.remove(job_id)
            removed += 1
    if removed:
        logger.info("removed %d job folders no job owns (left by an interrupted create)", removed)
    return removed
