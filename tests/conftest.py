"""Shared fixtures: the leak guard, offline images and a real registry."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# The suite gates every submission, so its property tests draw the same examples on every run
# (a failure is reproducible and never a coin toss in CI). To search afresh, as one should after
# changing a parser or the unpacker: HYPOTHESIS_PROFILE=explore ./dev test tests/...
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# An engine's monitor leaves as soon as it supervises nothing, unless a test asks it to linger
# (for warm commands): no monitor outlives the test that made it.
os.environ.setdefault("DOCKYARD_MONITOR_LINGER", "0")

pytest_plugins = ["testbed.leakguard", "testbed.fixtures_registry", "testbed.engine",
                  "testbed.apidaemon"]

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="integration tests need root")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)
