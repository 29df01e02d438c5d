"""`make test` runs pytest-xdist with `--dist loadgroup`: the groups tests/conftest.py sets (a
module, the cluster folder, the browser folder) must reach xdist's scheduler, or each worker
starts its own copy of every module's servers and of the cluster rig. pytest-xdist marks a
grouped test by appending `@group` to its node id; a pytest that ignores that write (9.2 with
xdist 3.8) would turn the run back into per-test scheduling without a word."""

from __future__ import annotations

import os

import pytest


def test_the_group_reaches_the_scheduler(request: pytest.FixtureRequest) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        pytest.skip("not under pytest-xdist")
    if not getattr(request.config.option, "loadgroup", False):  # a worker's view of --dist
        pytest.skip("not --dist loadgroup")
    assert request.node.nodeid.endswith("@tests/test_xdist_groups.py"), request.node.nodeid
