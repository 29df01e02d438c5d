"""Helios' application-scope commands: their one table (`COMMANDS`), and their parsing into
typed objects.

Each row of `COMMANDS` is a command's wire name, its parser, and what clients are told about it
(the description and params schema in `modelCapabilities`, the session JSON and the OpenAPI
`RequestSchema`: `capabilities.py` reads them from here). A parser reads the params under every
spelling clients use (the Reactor docs' names first) and rejects wrong types and ranges with
`CommandError`. Nothing here touches session state: a command that parses can still be refused
by the state machine; `Session._apply` matches every `Command` (mypy checks it is exhaustive,
a test that the table and the union name the same commands).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helios_serve.core.requests import RequestError, check_prompt, check_seed
from helios_serve.realtime.reactor.protocol import CommandError, Envelope

MAX_CHUNK_INDEX = 1_000_000
SR_SCALES = {"off": 1, "1x": 1, "none": 1, "2x": 2, "4x": 4}
"""Accepted `sr_scale` spellings → upscale factor (integers 1, 2, 4 are also accepted)."""


@dataclass(frozen=True)
class FileRef:
    """An uploaded file named by the client; `upload_id` is resolved to bytes by the session."""

    upload_id: str
    name: str = ""
    mime_type: str = ""
    size: int = 0


@dataclass(frozen=True)
class SetPrompt:
    prompt: str


@dataclass(frozen=True)
class SchedulePrompt:
    prompt: str
    chunk: int


@dataclass(frozen=True)
class SetImage:
    image: FileRef


@dataclass(frozen=True)
class SetConditioning:
    prompt: str
    image: FileRef


@dataclass(frozen=True)
class SetImageStrength:
    strength: float


@dataclass(frozen=True)
class SetSrScale:
    scale: int


@dataclass(frozen=True)
class SetSeed:
    seed: int


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class ClearImage:
    pass


Playback = Start | Pause | Resume | Reset
Command = (
    SetPrompt
    | SchedulePrompt
    | SetImage
    | SetConditioning
    | SetImageStrength
    | SetSrScale
    | SetSeed
    | ClearImage
    | Playback
)


@dataclass(frozen=True)
class _Params:
    """A command's params and uploads, with lookups that know the alternative spellings."""

    command: str
    data: dict[str, Any]
    uploads: dict[str, Any]

    def find(self, *names: str) -> Any:
        for name in names:
            if name in self.data and self.data[name] is not None:
                return self.data[name]
        raise CommandError(self.command, f"missing_field: '{names[0]}' is required")

    def prompt(self) -> str:
        try:  # the vocabulary's rules and words, as on every other way in
            return check_prompt(self.find("prompt", "text", "prompt_text")).strip()
        except RequestError as exc:
            raise CommandError(self.command, f"invalid_field: {exc.message}") from None

    def integer(self, *names: str) -> int:
        value = self.find(*names)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CommandError(self.command, f"invalid_field: '{names[0]}' must be an integer")
        return value

    def number(self, *names: str) -> float:
        value = self.find(*names)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise CommandError(self.command, f"invalid_field: '{names[0]}' must be a number")
        return float(value)

    def file_ref(self, *names: str) -> FileRef:
        # The SDK sends FileRefs in `uploads`; a ref inlined in `data` (or a bare id) is accepted.
        raw = next((self.uploads[n] for n in names if self.uploads.get(n) is not None), None)
        if raw is None:
            raw = self.find(*names)
        if isinstance(raw, str) and raw:
            return FileRef(upload_id=raw)
        if not isinstance(raw, dict):
            raise CommandError(self.command, f"invalid_field: '{names[0]}' must be a file ref")
        upload_id = raw.get("upload_id", raw.get("uploadId", raw.get("id")))
        if not isinstance(upload_id, str) or not upload_id:
            raise CommandError(self.command, f"invalid_field: '{names[0]}' has no upload_id")
        size = raw.get("size", 0)
        mime = raw.get("mime_type", raw.get("mimeType", ""))
        name = raw.get("name", "")
        return FileRef(
            upload_id=upload_id,
            name=name if isinstance(name, str) else "",
            mime_type=mime if isinstance(mime, str) else "",
            size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
        )


def _schedule_prompt(p: _Params) -> Command:
    chunk = p.integer("chunk", "chunk_index", "at_chunk", "chunkIndex")
    if not 0 <= chunk <= MAX_CHUNK_INDEX:
        raise CommandError(p.command, f"invalid_field: 'chunk' must be in 0..{MAX_CHUNK_INDEX}")
    return SchedulePrompt(p.prompt(), chunk)


def _image_strength(p: _Params) -> Command:
    value = p.number("image_strength", "strength", "imageStrength")
    if not 0.0 <= value <= 1.0:
        raise CommandError(p.command, "invalid_field: 'image_strength' must be in 0..1")
    return SetImageStrength(value)


def _sr_scale(p: _Params) -> Command:
    value = p.find("sr_scale", "scale", "srScale")
    if isinstance(value, str) and value.strip().lower() in SR_SCALES:
        return SetSrScale(SR_SCALES[value.strip().lower()])
    if isinstance(value, int) and not isinstance(value, bool) and value in (1, 2, 4):
        return SetSrScale(value)
    raise CommandError(p.command, "invalid_field: 'sr_scale' must be 'off', '2x' or '4x'")


def _seed(p: _Params) -> Command:
    try:
        seed = check_seed(p.find("seed"))
    except RequestError as exc:
        raise CommandError(p.command, f"invalid_field: {exc.message}") from None
    return SetSeed(-1 if seed is None else seed)  # -1: the session draws one


_PROMPT = {"type": "string", "description": "A non-empty text prompt."}
_IMAGE = {"type": "file", "description": "An uploaded image (PNG, JPEG, WEBP or GIF)."}


@dataclass(frozen=True)
class CommandSpec:
    """One command: its wire name, its parser, and what clients are told about it."""

    name: str
    parse: Callable[[_Params], Command]
    description: str
    params: dict[str, Any]
    """Each param's JSON schema (`"type": "file"` for an upload reference)."""


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "set_prompt",
        lambda p: SetPrompt(p.prompt()),
        "Prompt for the next chunk (chunk 0 before start).",
        {"prompt": _PROMPT},
    ),
    CommandSpec(
        "schedule_prompt",
        _schedule_prompt,
        "Queue a prompt at an absolute chunk index.",
        {"prompt": _PROMPT, "chunk": {"type": "integer", "minimum": 0}},
    ),
    CommandSpec(
        "set_image",
        lambda p: SetImage(p.file_ref("image", "file", "image_ref")),
        "Set or swap the reference image.",
        {"image": _IMAGE},
    ),
    CommandSpec(
        "set_conditioning",
        lambda p: SetConditioning(p.prompt(), p.file_ref("image", "file")),
        "Prompt and image at once.",
        {"prompt": _PROMPT, "image": _IMAGE},
    ),
    CommandSpec(
        "set_image_strength",
        _image_strength,
        "0 drops the image anchor; above 0 anchors; 1.0 makes a new image a hard cut.",
        {"image_strength": {"type": "number", "minimum": 0, "maximum": 1}},
    ),
    CommandSpec(
        "set_sr_scale",
        _sr_scale,
        "Upscale emitted frames from the next chunk.",
        {"sr_scale": {"type": "string", "enum": ["off", "2x", "4x"]}},
    ),
    CommandSpec(
        "set_seed",
        _seed,
        "Seed read at start; -1 is random.",
        {"seed": {"type": "integer", "minimum": -1}},
    ),
    CommandSpec("start", lambda _: Start(), "Start generating (needs a prompt at chunk 0).", {}),
    CommandSpec("pause", lambda _: Pause(), "Stop after the current chunk.", {}),
    CommandSpec("resume", lambda _: Resume(), "Continue after a pause.", {}),
    CommandSpec(
        "reset",
        lambda _: Reset(),
        "Back to the initial state; clears prompts and the image.",
        {},
    ),
    CommandSpec("clear_image", lambda _: ClearImage(), "Remove the reference image.", {}),
)
"""Every application-scope command, in the order `modelCapabilities` lists them."""

_PARSERS: dict[str, Callable[[_Params], Command]] = {c.name: c.parse for c in COMMANDS}


def canonical_name(name: str) -> str:
    """`setPrompt`, `Set-Prompt` and `set_prompt` are the same command."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name.strip())
    return snake.replace("-", "_").lower()


def parse_command(envelope: Envelope) -> Command:
    """Turn an application-scope envelope into a typed command, or raise `CommandError`."""
    name = canonical_name(envelope.type)
    parser = _PARSERS.get(name)
    if parser is None:
        raise CommandError(envelope.type[:64], "unknown_command")
    return parser(_Params(name, envelope.data, envelope.uploads))


def command_name(command: Command) -> str:
    """The wire name of a parsed command (for `command_error`)."""
    return canonical_name(type(command).__name__)
