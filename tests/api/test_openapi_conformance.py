"""schemathesis fuzzes the job API against the server's own `/openapi.json`: no 5xx, and every
answer (status, content type, body) is one the description documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from tests.live_server import app_server

from helios_serve.api.app import ApiConfig
from helios_serve.compose.app import JobApi, build_app
from helios_serve.compose.single import build_parts
from helios_serve.engine.fake import FakeEngine

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
"""The description's promises. Not "every schema-valid request is accepted": sizes in
multiples of 64, seeds in range and prompts with text are checked past what JSON Schema says."""


def test_the_job_api_keeps_its_description(tmp_path: Path) -> None:
    engine = FakeEngine()
    parts = build_parts(engine, tmp_path, idle_poll_s=0.05)
    app = build_app(engine, jobs=JobApi(parts, ApiConfig(max_queue=1000)))
    failures: list[str] = []
    with app_server(app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json").include(
            path_regex=r"^/v1/(videos|models)"
        )
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10, [op.label for op in operations]
        for operation in operations:
            failures += _fuzz(operation)
    parts.store.close()
    assert not failures, "\n\n".join(failures[:5])


def _fuzz(operation: Any) -> list[str]:
    found: list[str] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        try:
            case.call_and_validate(checks=CHECKS)
        except Exception as exc:  # schemathesis reports its findings as exceptions
            found.append(f"{operation.label}: {exc}"[:2000])

    run()
    return found
