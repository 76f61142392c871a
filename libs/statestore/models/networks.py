"""Tables owned by the networks service (prefix ``net_``); keys start with ``node_id``.

Names are unique per node; ``id`` alone is indexed for cross-node lookups by a gateway.
``net_endpoints`` holds one row per (network, container) from create/connect until rm/disconnect:
the requested settings, and while attached the address, MAC and host veth. ``net_sandboxes``
holds one row per container: the attach request, and while attached its netns and ports.
"""

from __future__ import annotations

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .common import NODE_ID_LEN, Base

__all__ = ["Endpoint", "Network", "Sandbox"]


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


class Endpoint(Base):
    """A container's membership of a network; ``state_json`` is {} while not attached."""

    __tablename__ = "net_endpoints"

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    network_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    container_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    container_name: Mapped[str] = mapped_column(String(255))
    endpoint_id: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[str] = mapped_column(Text)  # aliases, --ip, links, mac, driver opts
    state_json: Mapped[str] = mapped_column(Text)  # address, mac, veth while attached


class Sandbox(Base):
    """A container's network sandbox: the attach request and, while attached, netns and ports."""

    __tablename__ = "net_sandboxes"

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    container_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_json: Mapped[str] = mapped_column(Text)
    state_json: Mapped[str] = mapped_column(Text)
