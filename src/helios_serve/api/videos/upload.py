"""Reading a `POST /v1/videos` body under a hard byte cap, whatever its content type.

The caps and the JSON parsing are `web.bodies`'; this module adds forms. The route must take the
bare `Request` (no `Form(...)`/`File(...)` parameters, which would make FastAPI read the body
first).
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS, RequestLimits
from helios_serve.api.videos.params import VideoCreateRequest, parse_form, parse_json
from helios_serve.core.spec import ModelInfo
from helios_serve.web.bodies import capped_stream, check_content_length, read_json_body
from helios_serve.web.errors import bad_request, unsupported_media_type

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
        body = await read_json_body(request, limits.max_body_bytes)
        if not isinstance(body, dict):
            raise bad_request("the JSON body must be an object", param=None, code="invalid_body")
        return await run_in_threadpool(parse_json, body, model, limits)
    shown = kind[:100] or "no Content-Type"
    raise unsupported_media_type(
        f"unsupported content type ({shown}): send multipart/form-data, "
        "application/x-www-form-urlencoded or application/json"
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
        body = await read_json_body(request, 1 << 20)
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
