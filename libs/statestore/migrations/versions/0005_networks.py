"""networks: net_endpoints (container membership of networks) and net_sandboxes (netns, ports)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NODE = 32  # node id length


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "net_endpoints",
        sa.Column("node_id", sa.String(NODE), nullable=False),
        sa.Column("network_id", sa.String(64), nullable=False),
        sa.Column("container_id", sa.String(64), nullable=False),
        sa.Column("container_name", sa.String(255), nullable=False),
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "network_id", "container_id", name="pk_net_endpoints"),
    )
    op.create_table(
        "net_sandboxes",
        sa.Column("node_id", sa.String(NODE), nullable=False),
        sa.Column("container_id", sa.String(64), nullable=False),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "container_id", name="pk_net_sandboxes"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("net_sandboxes")
    op.drop_table("net_endpoints")
