"""Tables owned by the volumes service (prefix ``vol_``); a volume is named, per node."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .common import NODE_ID_LEN, Base

__all__ = ["Volume"]


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
