"""Requests from other web sites refused where CORS alone cannot refuse them.

A browser sends a form POST (`multipart/form-data`, `application/x-www-form-urlencoded`) to any
address without a preflight, so a page on evil.example could create jobs on a keyless server
at 127.0.0.1:8000 with its visitor's browser: CORS only hides the answer. `CrossSiteGuard`
refuses such a request with 403 before any route reads it: one whose `Origin` is neither this
server's own nor allowed with `--cors-origin`, or that the browser marks cross-site
(`Sec-Fetch-Site`, which pages cannot forge). Clients that are not browsers send neither header
and pass. Which requests are guarded is the app's choice: writes to the job API on a server
browsers use, every request on a worker's session port (gateways reach it, browsers never).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from helios_serve.errors import ForbiddenError
from helios_serve.web.errors import api_error_from_domain

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FOREIGN_SITES = frozenset({"cross-site", "same-site"})
"""`Sec-Fetch-Site` values of a request another origin's page made (same-site: another port
or subdomain, still another origin)."""

Guarded = Callable[[str, str], bool]
"""(method, path) → whether the request must come from this origin or an allowed one."""


def normal_origins(origins: tuple[str, ...]) -> frozenset[str]:
    return frozenset(o.rstrip("/").lower() for o in origins)


def is_own_or_allowed(origin: str, host: str, allowed: frozenset[str]) -> bool:
    """`origin` (an `Origin` header) is this server's own (`host`) or one of `allowed`."""
    origin = origin.rstrip("/").lower()
    if origin in allowed:
        return True
    return origin.split("://", 1)[-1] == host.lower()  # same origin: scheme-less host


def is_foreign(headers: dict[str, str], allowed: frozenset[str]) -> bool:
    """Whether a browser made this request for a page of another origin not allowed."""
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() in allowed:
        return False
    fetch_site = headers.get("sec-fetch-site", "").lower()
    if fetch_site == "same-origin":  # the browser's word (it may pass a proxy's Host rewrite)
        return False
    if fetch_site in FOREIGN_SITES:
        return True
    return origin is not None and not is_own_or_allowed(origin, headers.get("host", ""), allowed)


class CrossSiteGuard:
    """403 `cross_site_request` for guarded requests from a foreign origin."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...] = (), *, guarded: Guarded) -> None:
        self.app = app
        self.allowed = normal_origins(origins)
        self.guarded = guarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.guarded(scope["method"], scope["path"]):
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            if is_foreign(headers, self.allowed):
                refusal = ForbiddenError(
                    "requests from another web site are refused here; allow its origin with "
                    "--cors-origin",
                    param="Origin",
                )
                await api_error_from_domain(refusal).response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
