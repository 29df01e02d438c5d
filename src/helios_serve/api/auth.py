"""Optional bearer-token auth: when keys are configured, every route but /health needs one."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from helios_serve.web.errors import ApiError

OPEN_PATHS = frozenset({"/health"})
PAGE_PATHS = frozenset({"/", "/videos"})
PAGE_PREFIXES = ("/static/",)
"""The browser pages (the playground at `/`, the videos page) and their files: static, with no
data in them, and they must load before the person has typed a key into them (GET only)."""
_PRESIGNED_UPLOAD = re.compile(r"^/sessions/[^/]+/uploads/[^/]+$")
"""Upload PUTs carry no header (browsers PUT to the presigned URL verbatim): the unguessable
upload id in the URL is the credential, as with any presigned URL."""


def _key_matches(presented: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key, constant time each, so timing says nothing about which matched.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


def install_auth(app: FastAPI, keys: tuple[str, ...]) -> None:
    """Require `Authorization: Bearer <key>` on every route except OPEN_PATHS, GETs of the
    pages and their static files, and CORS preflight."""
    if not keys:
        return

    @app.middleware("http")
    async def require_key(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if (
            path in OPEN_PATHS
            or (
                request.method in ("GET", "HEAD")
                and (path in PAGE_PATHS or path.startswith(PAGE_PREFIXES))
            )
            or request.method == "OPTIONS"
            or (request.method == "PUT" and _PRESIGNED_UPLOAD.match(path))
        ):
            return await call_next(request)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not _key_matches(token.strip(), keys):
            return ApiError(
                401,
                "a valid API key is required (Authorization: Bearer <key>)",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            ).response()
        return await call_next(request)
