"""Reading request bodies under a hard byte cap, and parsing JSON ones off the event loop.

An over-limit body is never read whole: a `Content-Length` over the cap is answered 413 before
a byte of the body is read, and bodies without one (chunked) are counted while they stream and
cut off with a 413 the moment they pass the cap. JSON is parsed in a worker thread under
`loads_strict`'s limits, so a large document cannot stall `/health` and a deep one is a 400.
Every route that reads a body goes through here: the job API and the real-time signalling.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request

from helios_serve.core.json_text import JsonTextError, loads_strict
from helios_serve.errors import TooLargeError
from helios_serve.web.errors import bad_request


def too_large(cap: int) -> TooLargeError:
    return TooLargeError(f"request body is over the limit of {cap} bytes")


def check_content_length(headers: Headers, cap: int) -> None:
    """413 at once when the declared length is over `cap`; 400 when it is not a number."""
    declared = headers.get("content-length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise bad_request("Content-Length is not a number", param=None, code="invalid_body")
    if int(declared) > cap:
        raise too_large(cap)


async def capped_stream(chunks: AsyncIterator[bytes], cap: int) -> AsyncGenerator[bytes, None]:
    """Pass chunks through until more than `cap` bytes have come, then raise a 413."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > cap:
            raise too_large(cap)
        yield chunk


async def read_capped_body(request: Request, cap: int) -> bytes:
    """The whole body, if it fits `cap` (a 413 as soon as it does not)."""
    check_content_length(request.headers, cap)
    parts: list[bytes] = []
    async with aclosing(capped_stream(request.stream(), cap)) as stream:
        async for chunk in stream:
            parts.append(chunk)
    return b"".join(parts)


def load_json_body(body: bytes) -> Any:
    """Parse a JSON body (blocking); anything `loads_strict` refuses is a 400 `invalid_json`."""
    try:
        return loads_strict(body)
    except JsonTextError as exc:
        raise bad_request(
            f"body is not valid JSON: {exc}", param=None, code="invalid_json"
        ) from None


async def parse_json_off_loop(body: bytes) -> Any:
    """`load_json_body`, in a worker thread unless the body is small enough not to matter."""
    if len(body) < 4096:  # a thread hop costs more than parsing a signalling body
        return load_json_body(body)
    return await run_in_threadpool(load_json_body, body)


async def read_json_body(request: Request, cap: int) -> Any:
    """Read a body under `cap` and parse it as JSON off the event loop."""
    return await parse_json_off_loop(await read_capped_body(request, cap))
