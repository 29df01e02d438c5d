"""End-to-end fixtures: a real `helios serve` (started by `tests.live_server`, the one helper
every suite uses) and the seed's client scripts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.live_server import LiveServer, live_server

SEED_CLIENTS = Path(
    os.environ.get("HELIOS_SEED_CLIENTS")
    or Path(__file__).resolve().parents[3] / "shared" / "seeds" / "clients"
)
"""The seed's client scripts, used unchanged (CI checks the repo out with shared/ beside it)."""

needs_seed_clients = pytest.mark.skipif(
    not SEED_CLIENTS.is_dir(), reason=f"seed clients not found at {SEED_CLIENTS}"
)


@pytest.fixture(scope="module")
def distilled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("distilled")
    with live_server(
        data_dir, served_name="BestWishYsh/Helios-Distilled", graceful=False
    ) as server:
        yield server
