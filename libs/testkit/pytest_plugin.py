"""pytest fixtures for state store tests: ``pytest_plugins = ["testkit.pytest_plugin"]``.

Fixtures:
    pg_server: session-scoped ``PgServer`` (one throwaway PostgreSQL 15 for the whole run).
    pg_url: a fresh, empty database on it, per test: ``postgresql+asyncpg://postgres@/db?host=…``.
    state_url: parametrised over ``sqlite`` and ``postgres`` (the latter marked ``postgres``):
        an empty state store URL, for suites that must pass on both backends.

Tests that use ``pg_url`` must be marked ``@pytest.mark.postgres``. When PostgreSQL is not
installed they FAIL with the reason; they are never skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from .postgres import PgServer, PostgresUnavailable, postgres_server

__all__ = ["pg_server", "pg_url", "state_url"]

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server for the test session."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh empty database; dropped with the server at the end of the session."""
    return pg_server.create_database(f"t{next(_db_numbers)}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty state store URL on each backend in turn."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
