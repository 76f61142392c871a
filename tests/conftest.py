"""Top-level pytest hooks shared by every test tree; e2e fixtures live in tests/e2e/conftest.py."""

from __future__ import annotations

import os

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    # needs_root tests fail with the reason rather than being skipped.
    if item.get_closest_marker("needs_root") is not None and os.geteuid() != 0:
        pytest.fail("this test needs root (mounts, namespaces)", pytrace=False)
