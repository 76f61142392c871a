"""The nodes table: each berthd records itself at start, so gateways can see every host."""

from __future__ import annotations

from sqlalchemy import select

from statestore.engine import StateStore
from statestore.models.common import Node

__all__ = ["list_nodes", "register_node"]


async def register_node(state: StateStore, node_id: str, hostname: str, created: str) -> None:
    """Insert the node's row, or refresh its hostname when it already exists."""
    async with state.session() as s:
        row = (await s.execute(select(Node).where(Node.node_id == node_id))).scalar_one_or_none()
        if row is None:
            s.add(Node(node_id=node_id, hostname=hostname, created=created))
        elif row.hostname != hostname:
            row.hostname = hostname


async def list_nodes(state: StateStore) -> list[tuple[str, str]]:
    """(node_id, hostname) of every node that shares this state store."""
    async with state.session(readonly=True) as s:
        rows = (await s.execute(select(Node.node_id, Node.hostname).order_by(Node.node_id))).all()
    return [(r[0], r[1]) for r in rows]
