"""JSON responses in compact form: clients grep `"id":"..."`, so no space after separators."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


def compact_json(content: Any) -> bytes:
    """Serialise `content` as compact UTF-8 JSON; NaN and infinities are refused, as JSON does.

    A lone surrogate that slipped into a string (from a `\\ud800` JSON escape) is written back
    as its JSON escape instead of failing the whole response.
    """
    text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")


class CompactJSONResponse(JSONResponse):
    """`JSONResponse` with `{"id":"x"}` spacing (the seed shell scripts depend on it).

    Use it as the app's `default_response_class` so every route answers the same way.
    """

    def render(self, content: Any) -> bytes:
        return compact_json(content)
