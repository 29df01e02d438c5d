"""What a session advertises: the `capabilities` block of session JSON and `modelCapabilities`."""

from __future__ import annotations

from typing import Any

_PROMPT = {"type": "string", "description": "A non-empty text prompt."}
_IMAGE = {"type": "file", "description": "An uploaded image (PNG, JPEG, WEBP or GIF)."}

COMMAND_SCHEMAS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("set_prompt", "Prompt for the next chunk (chunk 0 before start).", {"prompt": _PROMPT}),
    (
        "schedule_prompt",
        "Queue a prompt at an absolute chunk index.",
        {"prompt": _PROMPT, "chunk": {"type": "integer", "minimum": 0}},
    ),
    ("set_image", "Set or swap the reference image.", {"image": _IMAGE}),
    ("set_conditioning", "Prompt and image at once.", {"prompt": _PROMPT, "image": _IMAGE}),
    (
        "set_image_strength",
        "0 drops the image anchor; above 0 anchors; 1.0 makes a new image a hard cut.",
        {"image_strength": {"type": "number", "minimum": 0, "maximum": 1}},
    ),
    (
        "set_sr_scale",
        "Upscale emitted frames from the next chunk.",
        {"sr_scale": {"type": "string", "enum": ["off", "2x", "4x"]}},
    ),
    ("set_seed", "Seed read at start; -1 is random.", {"seed": {"type": "integer", "minimum": -1}}),
    ("start", "Start generating (needs a prompt at chunk 0).", {}),
    ("pause", "Stop after the current chunk.", {}),
    ("resume", "Continue after a pause.", {}),
    ("reset", "Back to the initial state; clears prompts and the image.", {}),
    ("clear_image", "Remove the reference image.", {}),
)


def model_capabilities() -> dict[str, Any]:
    """The `modelCapabilities` payload answering `requestCapabilities`."""
    return {
        "commands": [
            {"name": name, "description": text, "schema": schema}
            for name, text, schema in COMMAND_SCHEMAS
        ]
    }


def session_capabilities(emission_fps: float) -> dict[str, Any]:
    """The `capabilities` block of the session description."""
    return {
        "protocol_version": "1.0",
        "tracks": [{"name": "main_video", "kind": "video", "direction": "recvonly"}],
        # Objects, not names: the JS SDK's schema rejects a list of strings on connect.
        "commands": model_capabilities()["commands"],
        "emission_fps": emission_fps,
    }


def _json_schema(params: dict[str, Any]) -> dict[str, Any]:
    properties = {}
    for name, spec in params.items():
        # A file travels as an upload reference, not inline: say so the OpenAPI way.
        properties[name] = (
            {"type": "string", "format": "binary", "description": spec["description"]}
            if spec.get("type") == "file"
            else dict(spec)
        )
    return {"type": "object", "properties": properties, "required": sorted(params)}


def openapi_schema() -> dict[str, Any]:
    """The command schema as an OpenAPI 3.1 document (the newer clients' `RequestSchema`):
    one component schema per command, named by the command, with its description."""
    schemas = {
        name: {"description": text, **_json_schema(params)}
        for name, text, params in COMMAND_SCHEMAS
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "helios", "version": "1.0"},
        "paths": {},
        "components": {"schemas": schemas},
    }
