"""Shared fixtures: the leak guard, offline images and a real registry."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["testbed.leakguard", "testbed.fixtures_registry", "testbed.engine"]

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="integration tests need root")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)
