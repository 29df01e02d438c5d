"""`input_reference`: an uploaded file or a `data:` URL, checked by its bytes, never its name.

| what was sent                                        | status | code                    |
|------------------------------------------------------|--------|-------------------------|
| empty file, text, HLS/ffconcat playlist, HTML, BMP... | 400    | invalid_input_reference |
| an http(s)/file/... URL, a `file_id`, bad data URL   | 400    | invalid_input_reference |
| over `MediaLimits.max_bytes`                         | 413    | file_too_large          |
| a PNG/JPEG/WEBP/GIF or MP4/MOV/WebM/AVI that cannot   | 422    | unprocessable_media     |
| be decoded, is truncated, or is over the pixel,       |        |                         |
| frame or duration limits (decompression bombs)        |        |                         |

A video of any length is a V2V reference: one under 33 frames (one chunk) is padded in front
with its first frame by the engine. URLs other than `data:` are refused, not fetched: the
server never makes outbound requests on a client's behalf (SSRF).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from helios_serve.errors import InvalidInputError, TooLargeError, UnprocessableError
from helios_serve.media.data_url import MediaTooLargeError
from helios_serve.media.data_url import decode_data_url as decode_media_url
from helios_serve.media.decode import MediaKind, load_image, probe_video, sniff_kind
from helios_serve.media.limits import MediaLimits
from helios_serve.web.errors import ApiError, bad_request

PARAM = "input_reference"
_FORMATS = "a PNG, JPEG, WEBP or GIF image, or an MP4/MOV, WebM/MKV or AVI video"


@dataclass(frozen=True)
class ReferenceMedia:
    """A checked reference: the raw bytes (kept for the job) and what they decode to."""

    data: bytes
    kind: MediaKind
    width: int
    height: int
    frames: int
    """1 for an image; the decoded frame count for a video."""


def _invalid(message: str) -> ApiError:
    return bad_request(message, param=PARAM, code="invalid_input_reference")


def _too_large(size: int, limits: MediaLimits) -> TooLargeError:
    return TooLargeError(
        f"input_reference is {size} bytes, over the limit of {limits.max_bytes} bytes",
        code="file_too_large",
        param=PARAM,
    )


def _unprocessable(exc: InvalidInputError) -> UnprocessableError:
    return UnprocessableError(f"input_reference: {exc.message}", param=PARAM)


def _unsupported_kind(data: bytes, limits: MediaLimits) -> ApiError:
    try:  # the decoder's own sniffing names what the bytes look like ("an HLS playlist")
        load_image(data, limits, param=PARAM)
        detail = "is not one of them"
    except InvalidInputError as exc:
        detail = exc.message.removeprefix("not an image ").strip("()")
    return _invalid(f"input_reference must be {_FORMATS}; this file {detail}")


def check_reference(data: bytes, limits: MediaLimits) -> ReferenceMedia:
    """Sniff and fully decode `data` under `limits`; blocking (run it off the event loop)."""
    if not data:
        raise _invalid("input_reference is an empty file")
    if len(data) > limits.max_bytes:
        raise _too_large(len(data), limits)
    kind = sniff_kind(data)
    if kind is None:
        raise _unsupported_kind(data, limits)
    if kind == "image":
        try:
            image = load_image(data, limits, param=PARAM)
        except InvalidInputError as exc:
            raise _unprocessable(exc) from exc
        return ReferenceMedia(data, "image", image.width, image.height, 1)
    try:
        info = probe_video(data, limits)
    except InvalidInputError as exc:
        raise _unprocessable(exc) from exc
    return ReferenceMedia(data, "video", info.width, info.height, info.frames)


def decode_data_url(url: str, limits: MediaLimits) -> bytes:
    """The bytes of a `data:` URL, with this API's codes (400 / 413)."""
    try:
        return decode_media_url(url, limits.max_bytes, PARAM)
    except MediaTooLargeError as exc:
        raise TooLargeError(exc.message, code="file_too_large", param=PARAM) from None
    except InvalidInputError as exc:
        raise _invalid(exc.message) from None


def _url_of(value: Any) -> str:
    """The URL inside the accepted JSON shapes of `input_reference`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "file_id" in value:
            raise _invalid("input_reference file ids are not supported; send a data: URL")
        keys = set(value) & {"image_url", "video_url"}
        if len(keys) != 1 or len(value) != 1:
            raise _invalid(
                'input_reference must be {"image_url": "data:..."} or {"video_url": "data:..."}'
            )
        inner = value[keys.pop()]
        if isinstance(inner, dict) and set(inner) == {"url"}:
            inner = inner["url"]
        if isinstance(inner, str):
            return inner
    raise bad_request(
        'input_reference must be a file upload, a data: URL or {"image_url": "data:..."}',
        param=PARAM,
        code="invalid_type",
    )


def reference_from_json(value: Any, limits: MediaLimits) -> ReferenceMedia | None:
    """Check a JSON (or text form field) `input_reference`; only `data:` URLs are accepted."""
    if value is None or value == "":
        return None
    return check_reference(decode_data_url(_url_of(value), limits), limits)
