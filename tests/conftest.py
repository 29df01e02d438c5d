"""Shared fixtures: the tiny checkpoints, built once per session through the real loader; and
the suite markers by folder (`pytest -m "not cluster and not browser"` is the quick loop)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helios_serve.engine.loader import LoadedModel, load_model

SUITE_MARKERS = ("e2e", "cluster", "browser")
"""A test under tests/<name>/ carries the marker <name>."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for name in SUITE_MARKERS:
            if "tests" in parts and name in parts[parts.index("tests") + 1 : -1]:
                item.add_marker(getattr(pytest.mark, name))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helios-data")


@pytest.fixture(scope="session")
def tiny_model(data_dir: Path) -> Callable[[str], LoadedModel]:
    """`tiny_model("tiny-base")` → the loaded tiny checkpoint (cached per session)."""
    cache: dict[str, LoadedModel] = {}

    def get(name: str) -> LoadedModel:
        if name not in cache:
            cache[name] = load_model(name, data_dir)
        return cache[name]

    return get
