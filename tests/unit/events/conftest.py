"""anyio on asyncio for the events tests."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
