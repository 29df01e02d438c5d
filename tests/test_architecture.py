"""The house rules the import contracts cannot say, read from the source: small modules and
functions, HTTP statuses in one place, one app and one uvicorn configuration, one table of the
real-time commands."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

from helios_serve.realtime.reactor import commands
from helios_serve.realtime.reactor.capabilities import COMMAND_SCHEMAS, model_capabilities

RUNTIME = Path(__file__).resolve().parents[1] / "src" / "helios_serve"
OWNED_ELSEWHERE: tuple[str, ...] = ()
"""Packages exempt from the size rule: none since the engine work of issues 20-22 landed."""


def _runtime_modules() -> list[Path]:
    return [
        p
        for p in sorted(RUNTIME.rglob("*.py"))
        if "proto" not in p.parts and p.relative_to(RUNTIME).parts[0] not in OWNED_ELSEWHERE
    ]


def test_no_runtime_module_over_400_lines_or_function_over_60() -> None:
    too_long = []
    for path in _runtime_modules():
        text = path.read_text()
        if len(text.splitlines()) > 400:
            too_long.append(f"{path.relative_to(RUNTIME)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    where = f"{path.relative_to(RUNTIME)}:{node.lineno}"
                    too_long.append(f"{where} {node.name}: {length} lines")
    assert too_long == []


def _code(path: Path) -> str:
    """The module without its docstrings and comments (they may name statuses)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            body[0] = ast.Pass()  # type: ignore[index]
    return ast.unparse(tree)


def test_http_error_statuses_are_known_only_to_web_errors() -> None:
    status = re.compile(r"ApiError\(\s*\d|status_code\s*=\s*[45]\d\d|HTTPException\(")
    found = [
        str(path.relative_to(RUNTIME))
        for path in sorted(RUNTIME.rglob("*.py"))
        if path.relative_to(RUNTIME) != Path("web/errors.py") and status.search(_code(path))
    ]
    assert found == []


def test_one_fastapi_app_and_one_uvicorn_configuration() -> None:
    apps = [p for p in sorted(RUNTIME.rglob("*.py")) if "FastAPI(" in _code(p)]
    configs = [p for p in sorted(RUNTIME.rglob("*.py")) if "uvicorn.Config(" in _code(p)]
    assert [p.relative_to(RUNTIME) for p in apps] == [Path("compose/app.py")]
    assert [p.relative_to(RUNTIME) for p in configs] == [Path("web/server.py")]


def _union_members(union: object) -> set[type]:
    members: set[type] = set()
    for arg in get_args(union):
        members |= _union_members(arg) if get_args(arg) else {arg}
    return members


def test_the_command_table_names_every_command_once() -> None:
    names = [spec.name for spec in commands.COMMANDS]
    assert len(names) == len(set(names))
    parsed = {
        type(spec.parse(commands._Params(spec.name, _valid_params(spec), {})))
        for spec in commands.COMMANDS
    }
    assert parsed == _union_members(commands.Command)  # every typed command has its row
    assert [name for name, _, _ in COMMAND_SCHEMAS] == names  # advertised from the table
    assert [c["name"] for c in model_capabilities()["commands"]] == names
    assert {commands.command_name(cls()) for cls in _no_field_commands()} <= set(names)


def _valid_params(spec: commands.CommandSpec) -> dict[str, object]:
    values = {"prompt": "a fox", "chunk": 1, "image": "upload-1", "image_strength": 0.5}
    values |= {"sr_scale": "2x", "seed": 7}
    return {name: values[name] for name in spec.params}


def _no_field_commands() -> list[type]:
    return [commands.Start, commands.Pause, commands.Resume, commands.Reset, commands.ClearImage]
