"""Tables owned by the volumes service (prefix ``vol_``); a volume is named, per node."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKeyConstraint, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from .common import NODE_ID_LEN, Base

__all__ = ["Volume", "VolumeRef"]


class Volume(Base):
    """One volume; driver options and labels are JSON objects."""

    __tablename__ = "vol_volumes"

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    driver: Mapped[str] = mapped_column(String(64))
    mountpoint: Mapped[str] = mapped_column(Text)
    options_json: Mapped[str] = mapped_column(Text)
    labels_json: Mapped[str] = mapped_column(Text)
    created: Mapped[str] = mapped_column(String(40))  # RFC 3339
    # Created without a name (docker volume create, run -v /p): prune removes it by default.
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class VolumeRef(Base):
    """A container's reference on a volume; a referenced volume is never deleted.

    The foreign key has no ON DELETE: the database itself refuses to drop a referenced volume.
    """

    __tablename__ = "vol_refs"
    __table_args__ = (
        ForeignKeyConstraint(["node_id", "volume_name"], ["vol_volumes.node_id", "vol_volumes.name"]),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    volume_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    container_id: Mapped[str] = mapped_column(String(64), primary_key=True)
