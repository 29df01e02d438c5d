"""Reading a `POST /v1/videos` body under a hard byte cap, whatever its content type.

An over-limit body is never read whole: a `Content-Length` over the cap is answered 413 before
a byte of the body is read, and bodies without one (chunked) are counted while they stream and
cut off with a 413 the moment they pass the cap. The route must take the bare `Request` (no
`Form(...)`/`File(...)` parameters, which would make FastAPI read the body first).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, Headers
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS, RequestLimits
from helios_serve.api.videos.params import VideoCreateRequest, parse_form, parse_json
from helios_serve.core.spec import ModelInfo
from helios_serve.web.errors import ApiError, bad_request

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class _StrictMultiPartParser(MultiPartParser):
    """Starlette's parser, but a text part that is not valid in its charset is a 400.

    Starlette silently decodes such parts as Latin-1, which would turn a broken prompt into
    mojibake instead of an error.
    """

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset or "utf-8")
            except (UnicodeDecodeError, LookupError) as exc:
                name = part.field_name[:100]
                raise MultiPartException(f"form field {name!r} is not valid UTF-8 text") from exc
        super().on_part_end()


def too_large(cap: int) -> ApiError:
    return ApiError(
        413,
        f"request body is over the limit of {cap} bytes",
        code="request_too_large",
    )


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


async def read_form(request: Request, limits: RequestLimits) -> FormData:
    """Parse a multipart or urlencoded form under the body cap and the field/file limits."""
    cap = limits.max_body_bytes
    check_content_length(request.headers, cap)
    async with aclosing(capped_stream(request.stream(), cap)) as stream:
        try:
            if media_type(request) == "multipart/form-data":
                return await _StrictMultiPartParser(
                    request.headers,
                    stream,
                    max_files=limits.max_files,
                    max_fields=limits.max_fields,
                    max_part_size=limits.max_part_size,
                ).parse()
            return await FormParser(
                request.headers,
                stream,
                max_fields=limits.max_fields,
                max_part_size=limits.max_part_size,
            ).parse()
        except MultiPartException as exc:
            raise bad_request(
                f"malformed form: {exc.message}", param=None, code="invalid_body"
            ) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def load_json_body(body: bytes) -> Any:
    """Parse a JSON body; malformed JSON, NaN/Infinity and absurd nesting or numbers are 400s."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        message = f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise bad_request(message, param=None, code="invalid_json") from exc
    except (ValueError, RecursionError) as exc:
        detail = str(exc)[:200] or "nested too deeply"
        raise bad_request(
            f"body is not valid JSON: {detail}", param=None, code="invalid_json"
        ) from exc


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_create_request(
    request: Request, model: ModelInfo, limits: RequestLimits = DEFAULT_REQUEST_LIMITS
) -> VideoCreateRequest:
    """Read and validate a create request sent as multipart, urlencoded or JSON.

    Raises `ApiError` (400, 413, 415, 422) for anything unusable; media decoding runs in a
    worker thread so the event loop stays free.
    """
    check_content_length(request.headers, limits.max_body_bytes)
    kind = media_type(request)
    if kind in FORM_TYPES:
        form = await read_form(request, limits)
        try:
            return await run_in_threadpool(parse_form, form, model, limits)
        finally:
            await form.close()
    if kind == "application/json" or kind.endswith("+json"):
        body = load_json_body(await read_capped_body(request, limits.max_body_bytes))
        if not isinstance(body, dict):
            raise bad_request("the JSON body must be an object", param=None, code="invalid_body")
        return await run_in_threadpool(parse_json, body, model, limits)
    shown = kind[:100] or "no Content-Type"
    raise ApiError(
        415,
        f"unsupported content type ({shown}): send multipart/form-data, "
        "application/x-www-form-urlencoded or application/json",
        code="unsupported_media_type",
    )


REMIX_FIELDS = frozenset({"prompt"})


async def read_remix_request(request: Request, limits: RequestLimits) -> dict[str, Any]:
    """A remix body, JSON or a form (OpenAI documents JSON; form clients send the same field);
    only `prompt` is known, anything else is refused by name."""
    check_content_length(request.headers, limits.max_body_bytes)
    kind = media_type(request)
    body: Any
    if kind in FORM_TYPES:
        form = await read_form(request, limits)
        try:
            body = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            if len(body) != len(form):
                raise bad_request("remix takes no files", param=None, code="invalid_body")
        finally:
            await form.close()
    else:
        body = load_json_body(await read_capped_body(request, 1 << 20))
    if not isinstance(body, dict):
        raise bad_request(
            "the body must be a JSON object with a prompt", param="prompt", code="invalid_body"
        )
    unknown = sorted(str(k) for k in body if k not in REMIX_FIELDS)
    if unknown:
        raise bad_request(
            f"unknown parameter {unknown[0][:100]!r} (remix takes only a prompt)",
            param=unknown[0][:100],
            code="unknown_parameter",
        )
    return body
