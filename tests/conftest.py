"""Shared fixtures: the tiny checkpoints, built once per session through the real loader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helios_serve.engine.loader import LoadedModel, load_model


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
