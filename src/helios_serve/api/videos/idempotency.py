"""`Idempotency-Key`: a retried create returns the job the first attempt made.

The key is remembered with a fingerprint of the request as the client sent it (before any
default, such as a random seed, is drawn): the same key with the same request gives the same
job; with a different request, 409.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from typing import Any

from starlette.datastructures import Headers

from helios_serve.jobs.records import IdempotencyClaim
from helios_serve.web.errors import bad_request

HEADER = "Idempotency-Key"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def read_claim(headers: Headers, route: str, request: object) -> IdempotencyClaim | None:
    """The claim for this request, or None when no key was sent; 400 for a malformed key."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise bad_request(
            f"{HEADER} must be 1 to 255 visible ASCII characters",
            param=HEADER,
            code="invalid_value",
        )
    payload = json.dumps({"route": route, "request": _plain(request)}, sort_keys=True)
    # the route is part of the key too: one key cannot name a create and a remix
    return IdempotencyClaim(f"{route}:{key}", hashlib.sha256(payload.encode()).hexdigest())


def _plain(value: Any) -> Any:
    """A JSON-able view of a parsed request: uploads by digest, not by content."""
    if isinstance(value, bytes):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    return value
