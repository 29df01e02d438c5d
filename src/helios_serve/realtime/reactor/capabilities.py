"""What a session advertises: the `capabilities` block of session JSON and `modelCapabilities`."""

from __future__ import annotations

from typing import Any

from helios_serve.realtime.reactor.commands import COMMANDS

COMMAND_SCHEMAS: tuple[tuple[str, str, dict[str, Any]], ...] = tuple(
    (c.name, c.description, c.params) for c in COMMANDS
)
"""(name, description, params schema) of every command, from the one table."""


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
