"""A digest beside every saved state and segment, so a damaged checkpoint is never trusted.

`seal(path, label)` writes `<path>.sha256`: the SHA-256 of the label and the file's bytes. The
label names what the file is (`state-5`, `segment-3`, `segment-7-trimmed`), so a state renamed
to a later chunk no longer matches, nor does a flipped byte, a truncated segment or a file whose
digest never got written (a crash between the two). A file that is not `intact` is a missing
checkpoint: its chunks are made again, and they are deterministic, so the video is the same.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from helios_serve.errors import HeliosError

SUFFIX = ".sha256"


class DamagedSourceError(HeliosError):
    """An extension's copy of its source's state fails its digest: it cannot be continued
    from (the extension is then made from the source's frames instead, when asked anew)."""

    code = "source_damaged"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def digest(label: str, path: Path) -> str:
    hasher = hashlib.sha256(label.encode() + b"\0")
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def seal(path: Path, label: str) -> Path:
    """Write `path`'s digest beside it (after the file itself is in place); returns it."""
    target = sidecar(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(digest(label, path) + "\n")
    tmp.replace(target)
    return target


def intact(path: Path, label: str) -> bool:
    """`path` is there, whole, and is what `label` says."""
    try:
        expected = sidecar(path).read_text().strip()
        return digest(label, path) == expected
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return False


def unverified(path: Path) -> bool:
    """`path` exists without a digest (written before digests were kept)."""
    return path.is_file() and not sidecar(path).exists()


def remove(path: Path) -> None:
    """Remove a file and its digest."""
    for each in (path, sidecar(path)):
        with contextlib.suppress(FileNotFoundError):
            each.unlink()


def state_label(index: int) -> str:
    return f"state-{index}"


def segment_label(index: int, *, trimmed: bool = False) -> str:
    return f"segment-{index}-trimmed" if trimmed else f"segment-{index}"
