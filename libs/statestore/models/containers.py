"""Tables owned by the containers service (prefix ``ctr_``).

Keys start with ``node_id`` like every berth table (see ``images``); container ids are random, so
``id`` alone is also indexed for a gateway that must find which node holds a container.
Names are unique per node. ``config_json`` holds what is fixed at create (Path, Args, Config,
HostConfig, NetworkingConfig, paths, mounts); ``state_json`` the run state (State, RestartCount,
NetworkSettings, manual-stop flag); ``state``/``pid``/``exit_code``/``started_at``/``finished_at``
repeat the main state fields as columns for queries.
"""

from __future__ import annotations

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .common import NODE_ID_LEN, Base

__all__ = ["Container"]


class Container(Base):
    """One container: immutable config as JSON, plus its mutable run state."""

    __tablename__ = "ctr_containers"
    __table_args__ = (
        UniqueConstraint("node_id", "name"),
        Index(None, "id"),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_LEN), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # 64 hex
    name: Mapped[str] = mapped_column(String(255))  # without the leading "/"
    image_id: Mapped[str] = mapped_column(String(71))
    config_json: Mapped[str] = mapped_column(Text)
    created: Mapped[str] = mapped_column(String(40))  # RFC 3339
    state: Mapped[str] = mapped_column(String(16))  # created/running/paused/exited/...
    pid: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[str] = mapped_column(String(40), default="")
    finished_at: Mapped[str] = mapped_column(String(40), default="")
    state_json: Mapped[str] = mapped_column(Text, default="{}", server_default=text("'{}'"))
