"""Reactor's protobuf wire format (`reactor_wire.v1`, spoken by reactor-sdk 1.x): frames ↔ helios.

Decoding turns a data-channel frame into an `Envelope` plus its request id, and a control-channel
frame into a `ControlIn`; encoding turns helios events and replies into `DataServerMessage` /
`ControlServerMessage` frames. The messages come from `proto/reactor_wire.proto` through the
`protobuf` library; nothing here touches bytes by hand.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct, Value

from helios_serve.realtime.reactor.proto import reactor_wire_pb2 as pb
from helios_serve.realtime.reactor.protocol import (
    APPLICATION,
    MAX_MESSAGE_BYTES,
    CommandError,
    ControlIn,
    Envelope,
    Event,
    error_code,
)

PUBLISH_REFUSED = "PUBLISH_REFUSED"
"""The code Reactor's runtime answers a refused `PublishTrack` with."""


class NonFiniteError(ValueError):
    """A Struct number that JSON cannot carry (NaN, ±Infinity); `path` names where."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _plain(value: Value, path: str) -> Any:
    # Struct numbers are doubles: integral ones come back as ints, as JSON would have them;
    # NaN and ±Infinity are refused here, as the JSON wire refuses them (`json_text`).
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise NonFiniteError(path)
        return int(number) if number.is_integer() else number
    if kind == "struct_value":
        return {k: _plain(v, f"{path}.{k}") for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value.list_value.values)]
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None  # null_value, or no kind set


def struct_to_dict(struct: Struct) -> dict[str, Any]:
    """A command's parameters as plain JSON values; `NonFiniteError` for NaN/±Infinity."""
    return {key: _plain(value, key) for key, value in struct.fields.items()}


def dict_to_struct(data: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(data)
    return struct


def _parse(message: Any, frame: str | bytes) -> None:
    if len(frame) > MAX_MESSAGE_BYTES:
        raise CommandError("unknown", f"message_too_large: over {MAX_MESSAGE_BYTES} bytes")
    raw = frame.encode() if isinstance(frame, str) else frame
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise CommandError(
            "unknown", f"invalid_message: not a reactor_wire.v1 frame ({exc})"
        ) from None


class DataFrameError(CommandError):
    """A data-channel frame that decoded but carries no command; `request_id` says whom to tell."""

    def __init__(self, request_id: str, command: str, reason: str) -> None:
        super().__init__(command, reason)
        self.request_id = request_id


def decode_command(frame: str | bytes) -> tuple[str, Envelope]:
    """A `DataClientMessage` → (request_id, the command as an application envelope)."""
    message = pb.DataClientMessage()
    _parse(message, frame)
    which = message.WhichOneof("payload")
    if which != "command":
        what = f"an error ({message.error.code})" if which == "error" else "no command"
        raise DataFrameError(message.request_id, "unknown", f"invalid_message: {what}")
    command = message.command
    uploads = {
        param: {
            "upload_id": ref.upload_id,
            "name": ref.name,
            "mime_type": ref.mime_type,
            "size": ref.size,
        }
        for param, ref in command.uploads.items()
    }
    if not command.type:
        raise DataFrameError(message.request_id, "unknown", "invalid_envelope: missing 'type'")
    try:
        params = struct_to_dict(command.data)
    except NonFiniteError as exc:
        reason = f"invalid_field: {exc.path[:80]!r} is not a finite number"
        raise DataFrameError(message.request_id, command.type[:64], reason) from None
    envelope = Envelope(APPLICATION, command.type, params, uploads)
    return message.request_id, envelope


_CONTROL_ACTIONS = {
    "ping": "ping",
    "request_schema": "request_schema",
    "file_uploaded": "file_uploaded",
    "request_clip": "request_clip",
    "request_recording": "request_recording",
    "publish_track": "publish_track",
    "pause_track": "pause_track",
    "resume_track": "resume_track",
    "unpublish_track": "unpublish_track",
    "error": "error",
}


def decode_control(frame: str | bytes) -> ControlIn:
    """A `ControlClientMessage` → `ControlIn` (track verbs carry their track's name)."""
    message = pb.ControlClientMessage()
    _parse(message, frame)
    which = message.WhichOneof("payload")
    if which is None or which not in _CONTROL_ACTIONS:
        # A payload this schema predates (protobuf keeps it as an unknown field): still liveness.
        return ControlIn("unknown", message.request_id)
    payload = getattr(message, which)
    name = payload.name if which.endswith("_track") else ""
    return ControlIn(_CONTROL_ACTIONS[which], message.request_id, name)


def _model_message(event: Event) -> pb.ModelMessage:
    inner = event["data"]
    return pb.ModelMessage(type=str(inner["type"]), data=dict_to_struct(inner.get("data") or {}))


def notification(event: Event) -> bytes:
    """An event as an uncorrelated `DataServerMessage`."""
    return pb.DataServerMessage(
        kind=pb.MESSAGE_KIND_NOTIFICATION, message=_model_message(event)
    ).SerializeToString()


def reply(request_id: str, event: Event | None) -> bytes:
    """A command's correlated success: its event, or a bare acknowledgement."""
    message = pb.DataServerMessage(request_id=request_id, kind=pb.MESSAGE_KIND_RESPONSE)
    if event is not None:
        message.message.CopyFrom(_model_message(event))
    return message.SerializeToString()


def reply_error(request_id: str, command: str, reason: str) -> bytes:
    """A command's correlated rejection, carrying what `command_error` carries."""
    return pb.DataServerMessage(
        request_id=request_id,
        kind=pb.MESSAGE_KIND_RESPONSE,
        error=pb.Error(code=error_code(reason), message=f"{command}: {reason}"),
    ).SerializeToString()


def schema_reply(request_id: str, openapi: dict[str, Any]) -> bytes:
    return pb.ControlServerMessage(
        request_id=request_id,
        kind=pb.MESSAGE_KIND_RESPONSE,
        model_schema=pb.ModelSchema(openapi=dict_to_struct(openapi)),
    ).SerializeToString()


def publish_refused(request_id: str, reason: str) -> bytes:
    return pb.ControlServerMessage(
        request_id=request_id,
        kind=pb.MESSAGE_KIND_RESPONSE,
        error=pb.Error(code=PUBLISH_REFUSED, message=reason),
    ).SerializeToString()


def clip_failed(request_id: str, reason: str) -> bytes:
    return pb.ControlServerMessage(
        request_id=request_id,
        kind=pb.MESSAGE_KIND_RESPONSE,
        clip_failed=pb.ClipFailed(reason=reason),
    ).SerializeToString()


def control_error(request_id: str, code: str, message: str) -> bytes:
    return pb.ControlServerMessage(
        request_id=request_id,
        kind=pb.MESSAGE_KIND_RESPONSE,
        error=pb.Error(code=code, message=message),
    ).SerializeToString()
