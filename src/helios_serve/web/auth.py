"""Optional bearer-token auth: when keys are configured, every route but /health needs one.

Installed once per app by the composition root (`compose.app.build_app`), whatever the app
serves: `helios serve`, a gateway, a worker's session port."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from helios_serve.errors import NotAuthenticatedError
from helios_serve.web.errors import api_error_from_domain
from helios_serve.web.origin import is_own_or_allowed, normal_origins

OPEN_PATHS = frozenset({"/health"})
PAGE_PATHS = frozenset({"/", "/videos"})
PAGE_PREFIXES = ("/static/",)
"""The browser pages (the playground at `/`, the videos page) and their files: static, with no
data in them, and they must load before the person has typed a key into them (GET only)."""
_PRESIGNED_UPLOAD = re.compile(r"^/sessions/[^/]+/uploads/[^/]+$")
"""Upload PUTs carry no header (browsers PUT to the presigned URL verbatim): the unguessable
upload id in the URL is the credential, as with any presigned URL."""


@dataclass(frozen=True)
class Access:
    """Who may call an app: its API keys (none: anyone) and the web origins allowed to call
    its guarded routes cross-origin (`web.cors`) and to open its WebSockets."""

    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    behind_gateway: bool = False
    """A worker's session port: gateways relay to it, browsers never call it, so no route
    takes cross-origin calls and any request from another origin is refused (`web.origin`)."""


def _key_matches(presented: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key, constant time each, so timing says nothing about which matched.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


def install_auth(app: FastAPI, access: Access) -> None:
    """Require `Authorization: Bearer <key>` on every route except OPEN_PATHS, GETs of the
    pages and their static files, and CORS preflight; WebSockets are checked by
    `WebSocketGate` (an HTTP middleware never sees them)."""
    keys = access.api_keys
    app.add_middleware(WebSocketGate, keys=keys, origins=access.cors_origins)
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
            refusal = NotAuthenticatedError(
                "a valid API key is required (Authorization: Bearer <key>)"
            )
            return api_error_from_domain(refusal).response()
        return await call_next(request)


QUERY_TOKENS = (b"api_key", b"token", b"access_token")
"""Query parameters a browser WebSocket may carry its key in (it cannot set headers)."""
POLICY_VIOLATION = 1008


class WebSocketGate:
    """WebSocket handshakes: the same key as HTTP (header, `?api_key=`/`?token=`, or the
    subprotocol pair `bearer, <key>`), and an `Origin` that is this server's own or allowed
    with `--cors-origin` (a page on another site must not open a stream with the visitor's
    browser). Refused handshakes are closed with 1008 before they are accepted."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...], origins: tuple[str, ...]) -> None:
        self.app = app
        self.keys = keys
        self.origins = normal_origins(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            reason = self._refusal(scope)
            if reason is not None:
                await receive()  # the websocket.connect message
                # accepted, then closed: the client sees close code 1008 and the reason (a
                # close before accepting would be a bare HTTP 403)
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason})
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if origin is not None and not is_own_or_allowed(
            origin, headers.get("host", ""), self.origins
        ):
            return "origin not allowed"
        if self.keys and not _key_matches(bearer_token(scope), self.keys):
            return "a valid API key is required"
        return None


def bearer_token(scope: Scope) -> str:
    """The key a WebSocket handshake carries: its bearer header, `?api_key=`/`?token=`, or the
    subprotocol pair `bearer, <key>` (a browser cannot set headers); "" when none."""
    headers: dict[str, str] = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
    }
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for pair in scope.get("query_string", b"").split(b"&"):
        name, _, value = pair.partition(b"=")
        if name in QUERY_TOKENS and value:
            return unquote(value.decode("latin-1"))
    protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    if len(protocols) >= 2 and protocols[0].lower() == "bearer":
        return protocols[1]
    return ""
