"""The protobuf wire (`reactor_wire.v1`): the committed gencode, sniffing, decoding and encoding."""

from __future__ import annotations

import filecmp
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from helios_serve.realtime.reactor import protocol as wire
from helios_serve.realtime.reactor import wire_pb
from helios_serve.realtime.reactor.link import WireFormat, sniff
from helios_serve.realtime.reactor.proto import reactor_wire_pb2 as pb

PROTO_DIR = Path(wire_pb.__file__).parent / "proto"
SRC = PROTO_DIR.parents[3]


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools (dev extra) not installed"
)
def test_committed_gencode_matches_the_proto(tmp_path: Path) -> None:
    import grpc_tools

    includes = Path(grpc_tools.__file__).parent / "_proto"
    proto = PROTO_DIR / "reactor_wire.proto"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{SRC}", f"-I{includes}",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", str(proto)],
        check=True,
    )  # fmt: skip
    fresh = tmp_path / proto.relative_to(SRC).parent
    for name in ("reactor_wire_pb2.py", "reactor_wire_pb2.pyi"):
        assert filecmp.cmp(fresh / name, PROTO_DIR / name, shallow=False), (
            f"{name} is stale: run `make proto`"
        )


def test_field_numbers_are_reactors() -> None:
    """A few numbers of the wire contract, read back from the compiled descriptors."""
    numbers = {f.name: f.number for f in pb.ControlClientMessage.DESCRIPTOR.fields}
    assert numbers == {
        "request_id": 1, "kind": 2, "ping": 10, "request_schema": 11, "file_uploaded": 12,
        "request_clip": 13, "request_recording": 14, "publish_track": 15, "pause_track": 16,
        "resume_track": 17, "unpublish_track": 18, "error": 40,
    }  # fmt: skip
    data = {f.name: f.number for f in pb.DataServerMessage.DESCRIPTOR.fields}
    assert data == {"request_id": 1, "kind": 2, "message": 10, "error": 40}
    assert pb.DataServerMessage.DESCRIPTOR.full_name == "reactor_wire.v1.DataServerMessage"
    assert pb.MESSAGE_KIND_NOTIFICATION == 3


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"scope":"runtime"}', WireFormat.JSON),
        (b'  {"scope":"runtime"}', WireFormat.JSON),
        (b"[1]", WireFormat.JSON),
        ("", WireFormat.JSON),
        (b"\x08\x01", WireFormat.PROTOBUF),
        (b"", WireFormat.PROTOBUF),
    ],
)
def test_sniff(frame: str | bytes, expected: WireFormat) -> None:
    assert sniff(frame) == expected


def test_command_decodes_to_an_envelope() -> None:
    command = pb.Command(type="set_image", data=wire_pb.dict_to_struct({"chunk": 3, "x": 0.5}))
    command.uploads["image"].CopyFrom(pb.UploadReference(upload_id="u1", name="a.png", size=9))
    frame = pb.DataClientMessage(request_id="data_1", kind=pb.MESSAGE_KIND_REQUEST, command=command)
    request_id, envelope = wire_pb.decode_command(frame.SerializeToString())
    assert request_id == "data_1"
    assert envelope.scope == wire.APPLICATION
    assert envelope.type == "set_image"
    # Struct numbers are doubles; integral ones come back as ints, the way JSON would carry them.
    assert envelope.data == {"chunk": 3, "x": 0.5}
    assert type(envelope.data["chunk"]) is int
    assert envelope.uploads == {
        "image": {"upload_id": "u1", "name": "a.png", "mime_type": "", "size": 9}
    }


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff\xff\xff",
        pb.DataClientMessage(request_id="r").SerializeToString(),
        pb.DataClientMessage(command=pb.Command()).SerializeToString(),
        b"\x00" * (wire.MAX_MESSAGE_BYTES + 1),
    ],
)
def test_bad_command_frames_raise_command_errors(frame: bytes) -> None:
    with pytest.raises(wire.CommandError) as exc:
        wire_pb.decode_command(frame)
    assert exc.value.reason.split(":")[0] in (
        "invalid_message",
        "invalid_envelope",
        "message_too_large",
    )


def test_control_frames() -> None:
    pause = pb.ControlClientMessage(
        kind=pb.MESSAGE_KIND_NOTIFICATION, pause_track=pb.PauseTrack(name="main_video")
    )
    assert wire_pb.decode_control(pause.SerializeToString()) == wire.ControlIn(
        "pause_track", "", "main_video"
    )
    schema = pb.ControlClientMessage(request_id="c1", request_schema=pb.RequestSchema())
    assert wire_pb.decode_control(schema.SerializeToString()).action == "request_schema"
    # A payload newer than this schema (reactor-sdk 1.13 reports stats in field 19): liveness.
    newer = b"\x10\x03\x9a\x01\x03\n\x01x"
    assert wire_pb.decode_control(newer) == wire.ControlIn("unknown", "")
    with pytest.raises(wire.CommandError):
        wire_pb.decode_control(b"\xff\xff")


def test_replies_and_notifications() -> None:
    event = wire.prompt_accepted("a cat")
    note = pb.DataServerMessage.FromString(wire_pb.notification(event))
    assert (note.request_id, note.kind) == ("", pb.MESSAGE_KIND_NOTIFICATION)
    assert note.message.type == "prompt_accepted"
    assert wire_pb.struct_to_dict(note.message.data) == {"prompt": "a cat"}
    ack = pb.DataServerMessage.FromString(wire_pb.reply("data_2", None))
    assert (ack.request_id, ack.kind, ack.WhichOneof("payload")) == (
        "data_2",
        pb.MESSAGE_KIND_RESPONSE,
        None,
    )
    err = pb.DataServerMessage.FromString(
        wire_pb.reply_error("data_3", "start", "no_prompt: set a prompt first")
    )
    assert err.error.code == "no_prompt"
    assert err.error.message == "start: no_prompt: set a prompt first"
