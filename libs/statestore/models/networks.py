"""Tables owned by the networks service (prefix ``net_``); keys start with ``node_id``.

Names are unique per node; ``id`` alone is indexed for cross-node lookups by a gateway.
"""

from __future__ import annotations

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .common import NODE_ID_LEN, Base

__all__ = ["Network"]


class Network(Base):
    """One network; its options, IPAM and labels are in ``config_json``."""

    __tablename__ = "net_networks"
    __table_args__ = (
        UniqueConstraint("node_id", "name"),
        Index(None, "id"),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # 64 hex
    name: Mapped[str] = mapped_column(String(255))
    driver: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[str] = mapped_column(Text)
    created: Mapped[str] = mapped_column(String(40))  # RFC 3339
