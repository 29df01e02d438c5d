"""`--storage URL` → the `BlobStore` it names: `s3://bucket/prefix` (any S3-compatible store,
configured the standard AWS way) or `file:///path` / a plain path (a folder every node mounts)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from helios_serve.errors import InvalidInputError
from helios_serve.jobs.blobs import BlobStore, LocalBlobStore


def open_blob_store(url: str, data_dir: Path) -> BlobStore:
    """Relative paths are taken from `data_dir`."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from helios_serve.jobs.s3 import S3BlobStore

        return S3BlobStore(url)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else url).expanduser()
        return LocalBlobStore(path if path.is_absolute() else data_dir / path)
    raise InvalidInputError(
        f"--storage must be s3://bucket/prefix or a folder, got {url!r}", param="storage"
    )
