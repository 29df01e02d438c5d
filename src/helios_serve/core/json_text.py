"""Strict JSON parsing for everything a client sends: one parser, one set of limits.

`json.loads` alone accepts NaN/Infinity, builds any number of keys and lets a `RecursionError`
escape on absurd nesting. Every way in (HTTP bodies, WebSocket frames, data-channel commands)
parses through `loads_strict`, so each of those is a clean `JsonTextError` its edge maps to a
400, a close 1007 or a `command_error`.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_KEYS = 10_000
"""Object keys per document, all objects together: real requests use a few dozen."""


class JsonTextError(ValueError):
    """The text is not JSON this server accepts; the message is safe to show a client."""


def _reject_constant(name: str) -> Any:
    raise JsonTextError(f"{name} is not a valid JSON number")


class _KeyBudget:
    """An `object_pairs_hook` that counts keys across the whole document."""

    def __init__(self, cap: int) -> None:
        self.left = cap
        self.cap = cap

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        self.left -= len(pairs)
        if self.left < 0:
            raise JsonTextError(f"more than {self.cap} object keys")
        return dict(pairs)


def loads_strict(text: str | bytes, *, max_keys: int = MAX_JSON_KEYS) -> Any:
    """Parse `text`; malformed JSON, NaN/Infinity, too many keys or too deep nesting raise
    `JsonTextError` with a one-line reason."""
    try:
        return json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_KeyBudget(max_keys)
        )
    except JsonTextError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JsonTextError("nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonTextError(str(exc)[:200] or "not valid JSON") from None
