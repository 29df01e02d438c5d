"""Shared fixtures: the tiny checkpoints, built once per session through the real loader; and
the suite markers by folder (`pytest -m "not cluster and not browser"` is the quick loop)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helios_serve.engine.loader import LoadedModel, load_model

SUITE_MARKERS = ("e2e", "cluster", "browser")
"""A test under tests/<name>/ carries the marker <name>."""
ONE_WORKER = ("cluster", "browser")
"""Folders whose tests share one rig (PostgreSQL + SeaweedFS; Chromium and its npm packages):
under pytest-xdist (`make test` runs two workers) all of a folder's tests go to one worker, so
the rig starts once; any other module's tests stay together (their module fixtures too)..."""
SPREAD = ("tests/e2e/test_seed_clients.py",)
"""...except these modules', whose tests are minutes long: one group per server fixture they use
(a test names it, or takes its name as a parameter), spread over the workers."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        inside = parts[parts.index("tests") + 1 : -1] if "tests" in parts else ()
        for name in SUITE_MARKERS:
            if name in inside:
                item.add_marker(getattr(pytest.mark, name))
        shared = next((name for name in ONE_WORKER if name in inside), None)
        module = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(shared or _spread(item, module)))
    # the long tests first, so the short ones fill the workers' ends (a stable sort: a module's
    # order, and so its fixtures' lifetimes, hold within each half)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _spread(item: pytest.Item, module: str) -> str:
    if module not in SPREAD:
        return module
    params = getattr(item, "callspec", None)
    named = [*getattr(item, "fixturenames", ()), *(params.params.values() if params else ())]
    servers = sorted(n for n in named if isinstance(n, str) and n.endswith("_server"))
    return f"{module}::{servers[0]}" if servers else item.nodeid


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
