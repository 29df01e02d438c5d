"""Correlated replies: each command's outcome goes to its `Reply` once applied, exactly once."""

from __future__ import annotations

from typing import Any

from helios_serve.realtime.reactor import protocol as wire

from .test_session import Rig, run


class Replies:
    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []

    def accept(self, event: wire.Event | None) -> None:
        self.got.append(("accept", None if event is None else event["data"]))

    def reject(self, command: str, reason: str) -> None:
        self.got.append(("reject", (command, reason)))


def submit(rig: Rig, name: str, data: dict[str, Any] | None = None) -> Replies:
    replies = Replies()
    rig.session.submit(wire.Envelope(wire.APPLICATION, name, data or {}), replies)
    return replies


def test_each_command_is_answered_with_its_own_event() -> None:
    async def body(rig: Rig) -> None:
        prompt = submit(rig, "set_prompt", {"prompt": "a cat"})
        seed = submit(rig, "set_seed", {"seed": 3})
        start = submit(rig, "start")
        await rig.chunk(0)
        assert prompt.got == [("accept", {"type": "prompt_accepted", "data": {"prompt": "a cat"}})]
        assert seed.got[0][1]["type"] == "state"
        assert seed.got[0][1]["data"]["seed"] == 3
        assert start.got == [
            (
                "accept",
                {"type": "generation_started", "data": {"prompt": "a cat", "chunk_index": 0}},
            )
        ]
        # The answering event is the reply, not also a broadcast; the rest still go out.
        assert rig.log.of("prompt_accepted") == []
        assert rig.log.of("generation_started") == []
        assert rig.log.of("conditions_ready")

    run(body)


def test_rejections_are_replies_and_change_nothing() -> None:
    async def body(rig: Rig) -> None:
        early = submit(rig, "start")
        unknown = submit(rig, "warp")
        bad = submit(rig, "set_image_strength", {"image_strength": 3})
        missing = submit(rig, "set_image", {"image": {"upload_id": "nope"}})
        ok = submit(rig, "set_prompt", {"prompt": "still fine"})
        await rig.log.wait("conditions_ready")
        assert early.got == [("reject", ("start", early.got[0][1][1]))]
        assert early.got[0][1][1].startswith("no_prompt")
        assert unknown.got == [("reject", ("warp", "unknown_command"))]
        assert bad.got[0][0] == "reject"
        assert missing.got[0][1][1].startswith("unknown_upload")
        assert ok.got[0][0] == "accept"
        assert rig.log.of("command_error") == []  # rejections went to their replies
        assert rig.session.state.started is False

    run(body)
