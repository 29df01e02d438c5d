"""`S3BlobStore`: job files in any S3-compatible store (AWS S3, MinIO, SeaweedFS, R2, GCS).

boto3 is the client: the reference implementation of the S3 API, and the standard AWS ways of
configuring it (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles,
instance roles) all work without a flag of ours. It is synchronous, like the rest of the
storage seam, which runs in `asyncio.to_thread`. A PUT is atomic in S3: readers see the whole
old object or the whole new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from helios_serve.jobs.blobs import check_key
from helios_serve.jobs.records import StoreUnavailableError

_MISSING = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix/")."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


class S3BlobStore:
    """Objects under `s3://bucket/prefix/`; errors reaching the store become
    `StoreUnavailableError` (a 503 at the HTTP edge)."""

    def __init__(self, url: str, client: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self._s3 = client or boto3.client(
            "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"})
        )

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        with _unavailable_on_error():
            self._s3.upload_file(str(path), self.bucket, self._key(key))

    def get_file(self, key: str, path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with _unavailable_on_error():
                try:
                    self._s3.download_file(self.bucket, self._key(key), tmp)
                except ClientError as exc:
                    if _is_missing(exc):
                        return False
                    raise
            os.replace(tmp, path)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        with _unavailable_on_error():
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                keys += [str(o["Key"])[len(self.prefix) :] for o in page.get("Contents", [])]
        return sorted(keys)

    def copy(self, source: str, target: str) -> bool:
        with _unavailable_on_error():
            try:
                self._s3.copy_object(
                    Bucket=self.bucket,
                    Key=self._key(target),
                    CopySource={"Bucket": self.bucket, "Key": self._key(source)},
                )
            except ClientError as exc:
                if _is_missing(exc):
                    return False
                raise
        return True

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        with _unavailable_on_error():
            for start in range(0, len(keys), 1000):  # S3's limit per DeleteObjects call
                batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
        return len(keys)


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


@contextlib.contextmanager
def _unavailable_on_error() -> Any:
    try:
        yield
    except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
        raise StoreUnavailableError(f"the object store is unavailable: {exc}") from exc
