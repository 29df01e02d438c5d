"""Command validation: every command, alternative spellings, and junk."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helios_serve.realtime.reactor import commands as c
from helios_serve.realtime.reactor.protocol import CommandError, Envelope, parse_envelope


def env(
    name: str, data: dict[str, Any] | None = None, uploads: dict[str, Any] | None = None
) -> Envelope:
    return Envelope("application", name, data or {}, uploads or {})


REF = {"upload_id": "u1", "name": "a.png", "mime_type": "image/png", "size": 10}


@pytest.mark.parametrize(
    ("name", "data", "uploads", "expected"),
    [
        ("set_prompt", {"prompt": " a cat "}, None, c.SetPrompt("a cat")),
        ("setPrompt", {"text": "a cat"}, None, c.SetPrompt("a cat")),
        ("schedule_prompt", {"prompt": "p", "chunk": 2}, None, c.SchedulePrompt("p", 2)),
        ("schedule_prompt", {"prompt": "p", "chunk_index": 3.0}, None, c.SchedulePrompt("p", 3)),
        ("set_image", {}, {"image": REF}, c.SetImage(c.FileRef("u1", "a.png", "image/png", 10))),
        ("set_image", {"image": "u2"}, None, c.SetImage(c.FileRef("u2"))),
        (
            "set_conditioning",
            {"prompt": "p"},
            {"image": REF},
            c.SetConditioning("p", c.FileRef("u1", "a.png", "image/png", 10)),
        ),
        ("set_image_strength", {"image_strength": 0.25}, None, c.SetImageStrength(0.25)),
        ("set_image_strength", {"strength": 1}, None, c.SetImageStrength(1.0)),
        ("set_sr_scale", {"sr_scale": "2x"}, None, c.SetSrScale(2)),
        ("set_sr_scale", {"scale": "off"}, None, c.SetSrScale(1)),
        ("set_sr_scale", {"scale": 4}, None, c.SetSrScale(4)),
        ("set_seed", {"seed": -1}, None, c.SetSeed(-1)),
        ("set_seed", {"seed": 42}, None, c.SetSeed(42)),
        ("start", {}, None, c.Start()),
        ("pause", {}, None, c.Pause()),
        ("resume", {}, None, c.Resume()),
        ("reset", {}, None, c.Reset()),
        ("clear_image", {}, None, c.ClearImage()),
    ],
)
def test_valid_commands_parse(
    name: str, data: dict[str, Any], uploads: Any, expected: c.Command
) -> None:
    assert c.parse_command(env(name, data, uploads)) == expected


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("fly_away", {}, "unknown_command"),
        ("set_prompt", {}, "missing_field"),
        ("set_prompt", {"prompt": "   "}, "invalid_field"),
        ("set_prompt", {"prompt": 5}, "invalid_field"),
        ("set_prompt", {"prompt": "x" * 32_001}, "invalid_field"),
        ("schedule_prompt", {"prompt": "p"}, "missing_field"),
        ("schedule_prompt", {"prompt": "p", "chunk": -1}, "invalid_field"),
        ("schedule_prompt", {"prompt": "p", "chunk": "2"}, "invalid_field"),
        ("schedule_prompt", {"prompt": "p", "chunk": True}, "invalid_field"),
        ("set_image", {}, "missing_field"),
        ("set_image", {"image": {"name": "x"}}, "invalid_field"),
        ("set_conditioning", {"prompt": "p"}, "missing_field"),
        ("set_image_strength", {"image_strength": 1.5}, "invalid_field"),
        ("set_image_strength", {"strength": "high"}, "invalid_field"),
        ("set_sr_scale", {"sr_scale": "3x"}, "invalid_field"),
        ("set_sr_scale", {}, "missing_field"),
        ("set_seed", {"seed": 1.5}, "invalid_field"),
        ("set_seed", {"seed": -2}, "invalid_field"),
    ],
)
def test_bad_commands_are_rejected(name: str, data: dict[str, Any], reason: str) -> None:
    with pytest.raises(CommandError) as err:
        c.parse_command(env(name, data))
    assert err.value.reason.startswith(reason)


def test_envelope_nested_and_flat() -> None:
    nested = json.dumps({"scope": "application", "data": {"type": "start", "data": {}}})
    assert parse_envelope(nested) == Envelope("application", "start", {}, {})
    flat = json.dumps({"type": "set_prompt", "data": {"prompt": "p"}})
    assert parse_envelope(flat).data == {"prompt": "p"}
    ref = {
        "scope": "application",
        "data": {"type": "set_image", "data": {}, "uploads": {"image": REF}},
    }
    assert parse_envelope(json.dumps(ref)).uploads == {"image": REF}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_envelope"),
        ('{"scope": "application"}', "invalid_envelope"),
        ('{"data": {"type": 5}}', "invalid_envelope"),
        ('{"data": {"type": "start", "data": [1]}}', "invalid_params"),
        ('{"scope": "other", "data": {"type": "start"}}', "invalid_scope"),
        ("x" * (1024 * 1024), "message_too_large"),
        (b"\xff\xfe", "invalid_json"),
    ],
)
def test_junk_envelopes_are_rejected(raw: str | bytes, reason: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_envelope(raw)
    assert err.value.reason.startswith(reason)


def test_command_name_round_trips() -> None:
    assert c.command_name(c.SetSrScale(2)) == "set_sr_scale"
    assert c.command_name(c.SetImageStrength(0.1)) == "set_image_strength"
