"""ClientLink: one client connection's channels, in the wire format that client speaks.

Both generations of Reactor clients talk to the same `Session`:

- JS SDK 2.9.0 (the `sdp_params` flow): JSON on the `"data"` channel. Its format is known when it
  connects, so the session's `state` goes out as soon as the channel opens.
- reactor-sdk 1.x and JS SDK ≥ 2.12 (the `connections` flow): a `"control"` channel next to
  `"data"`, and a format that is sniffed from the first inbound frame on either channel, the way
  Reactor's runtime does it (`sniff`). Nothing is sent before that frame: a protobuf client cannot
  read JSON, nor the other way round. 1.x speaks protobuf and awaits a correlated reply to every
  command; JS ≥ 2.12 speaks JSON.

Every inbound frame on either channel counts as liveness.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

from helios_serve.realtime.reactor import protocol as wire
from helios_serve.realtime.reactor import wire_pb
from helios_serve.realtime.reactor.capabilities import openapi_schema
from helios_serve.realtime.reactor.peer import CONTROL_CHANNEL_LABEL, DATA_CHANNEL_LABEL, MAIN_VIDEO
from helios_serve.realtime.reactor.session import CLIPS_UNSUPPORTED, Session

logger = logging.getLogger(__name__)

Send = Callable[[str, str | bytes], bool]
"""`send(channel label, frame)`; False when that channel is not open."""
PauseVideo = Callable[[bool], None]
NO_INPUT_TRACKS = "helios takes no input track: it only sends main_video"


class WireFormat(StrEnum):
    JSON = "json"
    """The nested JSON envelope (JS SDK 2.9.0; JS ≥ 2.12 on the connection flow)."""
    PROTOBUF = "protobuf"
    """`reactor_wire.v1` (reactor-sdk 1.x)."""


def sniff(frame: str | bytes) -> WireFormat:
    """Text, or bytes whose first non-blank byte opens a JSON document, is JSON; else protobuf."""
    if isinstance(frame, str):
        return WireFormat.JSON
    return WireFormat.JSON if frame.lstrip()[:1] in (b"{", b"[") else WireFormat.PROTOBUF


class _ProtobufReply:
    """A command's correlated response on the data channel."""

    def __init__(self, link: ClientLink, request_id: str) -> None:
        self._link = link
        self._request_id = request_id

    def accept(self, event: wire.Event | None) -> None:
        self._link.send_data(wire_pb.reply(self._request_id, event))

    def reject(self, command: str, reason: str) -> None:
        self._link.send_data(wire_pb.reply_error(self._request_id, command, reason))


class ClientLink:
    def __init__(
        self,
        session: Session,
        send: Send,
        pause_video: PauseVideo,
        wire_format: WireFormat | None,
    ) -> None:
        """`wire_format` None: sniff it from the client's first frame."""
        self._session = session
        self._send = send
        self._pause_video = pause_video
        self.format = wire_format
        self._data_open = False
        self._ready = False
        self.frames_in = 0

    # ------------------------------------------------------------------ inbound
    def channel_opened(self, label: str) -> None:
        self._session.touch()
        if label == DATA_CHANNEL_LABEL:
            self._data_open = True
            self._maybe_ready()

    def on_frame(self, label: str, frame: str | bytes) -> None:
        self.frames_in += 1
        if self.format is None:
            self.format = sniff(frame)
            logger.info("client speaks %s", self.format.value)
            self._maybe_ready()
        if self.format is WireFormat.JSON:
            if label == DATA_CHANNEL_LABEL:
                self._session.receive(frame)  # the 2.9.0 envelope, as it always was
            else:
                self._json_control(frame)
        elif label == DATA_CHANNEL_LABEL:
            self._protobuf_data(frame)
        else:
            self._protobuf_control(frame)

    def _maybe_ready(self) -> None:
        # The first `state` goes out once the client can read it.
        if not self._ready and self._data_open and self.format is not None:
            self._ready = True
            self._session.channel_opened()

    def _json_control(self, frame: str | bytes) -> None:
        if not self._session.admit():
            return  # nothing on this channel can be answered with an error event; drop it
        try:
            message = wire.parse_control_json(frame)
        except wire.CommandError as exc:
            logger.info("ignoring a control message: %s", exc)
            return
        self._control(message)

    def _protobuf_data(self, frame: str | bytes) -> None:
        request_id = ""
        try:
            if not self._session.admit():
                request_id = _peek_request_id(frame)
                raise wire.CommandError("unknown", "rate_limited")
            request_id, envelope = wire_pb.decode_command(frame)
        except wire_pb.DataFrameError as exc:
            self._error(exc.request_id, exc.command, exc.reason)
            return
        except wire.CommandError as exc:
            self._error(request_id, exc.command, exc.reason)
            return
        reply = _ProtobufReply(self, request_id) if request_id else None
        self._session.submit(envelope, reply)

    def _error(self, request_id: str, command: str, reason: str) -> None:
        if request_id:
            self.send_data(wire_pb.reply_error(request_id, command, reason))
        else:
            self.notify(wire.command_error(command, reason))

    def _protobuf_control(self, frame: str | bytes) -> None:
        if not self._session.admit():
            return
        try:
            message = wire_pb.decode_control(frame)
        except wire.CommandError as exc:
            logger.info("ignoring a control message: %s", exc)
            return
        self._control(message)

    def _control(self, message: wire.ControlIn) -> None:
        """Platform and track traffic; requests get their answer on the channel they use."""
        match message.action:
            case "pause_track" | "resume_track":
                if message.name == MAIN_VIDEO:
                    self._pause_video(message.action == "pause_track")
                else:
                    logger.info("%s for unknown track %r", message.action, message.name[:64])
            case "request_schema" if message.request_id:
                self._send_control(wire_pb.schema_reply(message.request_id, openapi_schema()))
            case "publish_track" if message.request_id:
                self._refuse_publish(message.request_id)
            case "request_clip" | "request_recording" if message.request_id:
                self._send_control(wire_pb.clip_failed(message.request_id, CLIPS_UNSUPPORTED))
            case "error":
                logger.info("the client reported an error on the control channel")
            case _:
                # ping (the frame itself was the point), file_uploaded (stored by HTTP already),
                # unpublish_track, a payload newer than our schema (1.13 sends periodic stats),
                # or a request without a request_id (nobody to answer).
                pass

    def _refuse_publish(self, request_id: str) -> None:
        if self.format is WireFormat.JSON:
            self._send(
                CONTROL_CHANNEL_LABEL,
                wire.control_response_json(
                    request_id, "publish_track", wire_pb.PUBLISH_REFUSED, NO_INPUT_TRACKS
                ),
            )
        else:
            self._send_control(wire_pb.publish_refused(request_id, NO_INPUT_TRACKS))

    # ------------------------------------------------------------------ outbound
    def notify(self, event: wire.Event) -> None:
        """An event for the client, in its format; dropped until the client can read it."""
        if not self._ready:
            return
        if self.format is WireFormat.PROTOBUF:
            self.send_data(wire_pb.notification(event))
        else:
            self.send_data(wire.encode(event))

    def send_data(self, frame: str | bytes) -> None:
        self._send(DATA_CHANNEL_LABEL, frame)

    def _send_control(self, frame: bytes) -> None:
        self._send(CONTROL_CHANNEL_LABEL, frame)


def _peek_request_id(frame: str | bytes) -> str:
    """The request id of a frame refused unread (rate limit), so its sender still gets a reply."""
    try:
        return wire_pb.decode_command(frame)[0]
    except wire.CommandError:
        return ""
