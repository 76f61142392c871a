"""Shared declarative base and the tables every owner uses: object_ids and nodes."""

from __future__ import annotations

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["NODE_ID_LEN", "Base", "Node", "ObjectId"]

# Stable constraint names, so later SQLite batch migrations can find and alter them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NODE_ID_LEN = 32  # load_node_id() writes 32 hex characters


class Base(DeclarativeBase):
    """Declarative base of every berth table; its metadata is the migration target."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ObjectId(Base):
    """One row per image/container/network id on a node, so a 64-hex id names one kind only.

    Written by each owner in the same transaction as its own row (podman's IDNamespace).
    """

    __tablename__ = "object_ids"

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex, without "sha256:"
    kind: Mapped[str] = mapped_column(String(16))  # "image", "container", "network"


class Node(Base):
    """A host sharing this state store; written by berthd at start."""

    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    created: Mapped[str] = mapped_column(String(40))  # RFC 3339
