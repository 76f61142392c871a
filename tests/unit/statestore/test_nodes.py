"""Node registration on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from statestore import open_store
from statestore.nodes import list_nodes, register_node


@pytest.mark.anyio
async def test_register_node_is_idempotent(state_url: str) -> None:
    state = await open_store(state_url)
    try:
        await register_node(state, "a" * 32, "host-a", "2026-01-01T00:00:00Z")
        await register_node(state, "a" * 32, "host-a2", "2026-01-02T00:00:00Z")
        await register_node(state, "b" * 32, "host-b", "2026-01-01T00:00:00Z")
        assert await list_nodes(state) == [("a" * 32, "host-a2"), ("b" * 32, "host-b")]
    finally:
        await state.aclose()
