"""Fixtures for the state store unit tests (PostgreSQL ones come from testkit.pytest_plugin)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
