"""`data:` URLs, the one kind of URL the server accepts for media (others are never fetched)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes, urlsplit

from helios_serve.errors import InvalidInputError


class MediaTooLargeError(InvalidInputError):
    code = "file_too_large"


def check_data_url(url: str, param: str) -> str:
    """`url` itself if it is a `data:` URL; otherwise a clear refusal naming its scheme."""
    if url.strip()[:5].lower() == "data:":
        return url.strip()
    head = url[:200]
    scheme = urlsplit(head).scheme.lower() if ":" in head else ""
    shown = f"{scheme}: URLs" if scheme.isalnum() else "URLs"
    raise InvalidInputError(
        f"{param} {shown} are not fetched (only data: URLs are accepted); upload the file or "
        "embed it as a base64 data: URL",
        param=param,
    )


def decode_data_url(url: str, max_bytes: int, param: str) -> bytes:
    """The bytes of a `data:[<type>][;base64],<payload>` URL (the declared type is ignored)."""
    head, comma, payload = check_data_url(url, param)[5:].partition(",")
    if not comma:
        raise InvalidInputError(f"{param} data URL has no ',' before its payload", param=param)
    if ";base64" not in head.lower():
        data = unquote_to_bytes(payload)
    else:
        if len(payload) // 4 * 3 > max_bytes + 3:
            raise _too_large(len(payload) // 4 * 3, max_bytes, param)
        cleaned = "".join(payload.split())
        cleaned += "=" * (-len(cleaned) % 4)
        try:
            if "-" in cleaned or "_" in cleaned:
                data = base64.urlsafe_b64decode(cleaned)
            else:
                data = base64.b64decode(cleaned, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(f"{param} data URL is not valid base64", param=param) from None
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes, param)
    return data


def _too_large(size: int, cap: int, param: str) -> MediaTooLargeError:
    return MediaTooLargeError(
        f"{param} is {size} bytes, over the limit of {cap} bytes", param=param
    )
