"""Reactor's JSON wire envelope and the literal names of Helios commands and events.

Both directions carry `{"scope", "data": {"type", "data", "uploads"?}}` as JSON text. This module
parses and builds that envelope, the JSON control-channel messages of JS SDK >= 2.12, and the
format-free `Envelope` / `ControlIn` the protobuf wire (`wire_pb.py`) decodes into too; what a
command's params mean lives in `commands.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from helios_serve.core.json_text import JsonTextError, loads_strict

APPLICATION = "application"
RUNTIME = "runtime"

MAX_MESSAGE_BYTES = 256 * 1024
"""A data-channel message over this is refused unparsed (a FileRef never needs more)."""

Event = dict[str, Any]
"""One outgoing message, already in its nested envelope."""

CONTROL_ACTIONS = (
    "ping",
    "request_schema",
    "request_capabilities",
    "file_uploaded",
    "request_clip",
    "request_recording",
    "publish_track",
    "unpublish_track",
    "pause_track",
    "resume_track",
    "error",
    "unknown",
)
"""Platform and track traffic (the newer clients' control channel), in snake case; `unknown` is
a protobuf payload newer than this server's schema."""


class CommandError(Exception):
    """A rejected command; becomes `command_error {command, reason}` and changes nothing."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command}: {reason}")
        self.command = command
        self.reason = reason


@dataclass(frozen=True)
class Envelope:
    """One incoming message: its scope, type, params and (application scope) FileRefs."""

    scope: str
    type: str
    data: dict[str, Any]
    uploads: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlIn:
    """One platform or track message, whichever wire format carried it."""

    action: str
    """One of `CONTROL_ACTIONS`."""
    request_id: str = ""
    """Set when the client awaits a correlated reply."""
    name: str = ""
    """The track a track verb names."""


def _json_object(raw: str | bytes) -> dict[str, Any]:
    """One JSON object from a channel message, within the size cap; else `CommandError`."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise CommandError("unknown", f"message_too_large: over {MAX_MESSAGE_BYTES} bytes")
    try:
        doc = loads_strict(raw)
    except JsonTextError as exc:
        raise CommandError("unknown", f"invalid_json: {exc}") from None
    if not isinstance(doc, dict):
        raise CommandError("unknown", "invalid_envelope: expected a JSON object")
    return doc


def parse_envelope(raw: str | bytes) -> Envelope:
    """Decode one data-channel message; anything malformed raises `CommandError`."""
    doc = _json_object(raw)
    scope = doc.get("scope", APPLICATION)
    # Tolerate a flat `{type, data}` message besides the nested envelope.
    inner = doc if "type" in doc else doc.get("data")
    if not isinstance(inner, dict):
        raise CommandError("unknown", "invalid_envelope: missing 'data' object")
    name = inner.get("type")
    if not isinstance(name, str) or not name:
        raise CommandError("unknown", "invalid_envelope: missing command 'type'")
    params = inner.get("data", {})
    uploads = inner.get("uploads", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or not isinstance(uploads, dict | None):
        raise CommandError(name, "invalid_params: 'data' and 'uploads' must be objects")
    if scope not in (APPLICATION, RUNTIME):
        raise CommandError(name, f"invalid_scope: {str(scope)[:40]!r}")
    return Envelope(scope, name, params, uploads or {})


def parse_control_json(raw: str | bytes) -> ControlIn:
    """A JSON control-channel message of JS SDK ≥ 2.12: `{type: "notification", event, data}`
    for track verbs, `{type: "request", method, request_id, data}` for `publish_track`."""
    doc = _json_object(raw)
    action = doc.get("event") if doc.get("type") == "notification" else doc.get("method")
    if not isinstance(action, str) or action not in CONTROL_ACTIONS:
        raise CommandError(str(action)[:64], "unknown_command")
    data = doc.get("data")
    name = data.get("name", "") if isinstance(data, dict) else ""
    request_id = doc.get("request_id", "")
    return ControlIn(
        action,
        request_id if isinstance(request_id, str) else "",
        name if isinstance(name, str) else "",
    )


def control_response_json(request_id: str, method: str, code: str, message: str) -> str:
    """The JSON control channel's refusal of a request (the only answer Helios gives there)."""
    return encode(
        {
            "type": "response",
            "method": method,
            "request_id": request_id,
            "error": {"code": code, "message": message},
        }
    )


def encode(event: Event) -> str:
    """Serialise an event for the data channel."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False)


def application_event(name: str, data: dict[str, Any] | None = None) -> Event:
    """A Helios event in the nested envelope the SDK expects."""
    return {"scope": APPLICATION, "data": {"type": name, "data": data or {}}}


def runtime_event(name: str, data: dict[str, Any] | None = None) -> Event:
    return {"scope": RUNTIME, "data": {"type": name, "data": data or {}}}


def state_event(snapshot: dict[str, Any]) -> Event:
    return application_event("state", snapshot)


def prompt_accepted(prompt: str) -> Event:
    return application_event("prompt_accepted", {"prompt": prompt})


def image_accepted(width: int, height: int) -> Event:
    return application_event("image_accepted", {"width": width, "height": height})


def conditions_ready(has_prompt: bool, has_image: bool) -> Event:
    return application_event("conditions_ready", {"has_prompt": has_prompt, "has_image": has_image})


def generation_started(prompt: str, chunk_index: int) -> Event:
    return application_event("generation_started", {"prompt": prompt, "chunk_index": chunk_index})


def chunk_complete(chunk_index: int, frames_emitted: int, active_prompt: str | None) -> Event:
    return application_event(
        "chunk_complete",
        {
            "chunk_index": chunk_index,
            "frames_emitted": frames_emitted,
            "active_prompt": active_prompt,
        },
    )


def chunk_shown(chunk_index: int, active_prompt: str, pts: int | None) -> Event:
    """The first frame of chunk `chunk_index` went out on the track (at `pts`, 90 kHz clock
    from the track's first frame): the moment a change reaches the screen."""
    data: dict[str, Any] = {"chunk_index": chunk_index, "active_prompt": active_prompt}
    if pts is not None:
        data["pts"] = pts
    return application_event("chunk_shown", data)


def generation_paused() -> Event:
    return application_event("generation_paused")


def generation_resumed() -> Event:
    return application_event("generation_resumed")


def generation_reset() -> Event:
    return application_event("generation_reset")


def command_error(command: str, reason: str) -> Event:
    return application_event("command_error", {"command": command, "reason": reason})


def event_type(event: Event) -> str:
    """The `type` of an event in the nested envelope."""
    return str(event["data"]["type"])


def error_code(reason: str) -> str:
    """The machine-readable head of a rejection reason (`invalid_field: ...` → `invalid_field`)."""
    return reason.split(":", 1)[0].strip() or "command_error"
