"""Test helpers importable by every test tree: throwaway PostgreSQL, fakes and conformance suites.

The pytest fixtures live in ``testkit.pytest_plugin``; a test module enables them with
``pytest_plugins = ["testkit.pytest_plugin"]``.
"""

from __future__ import annotations

from .postgres import PgServer, PostgresUnavailable, postgres_server

__all__ = ["PgServer", "PostgresUnavailable", "postgres_server"]
