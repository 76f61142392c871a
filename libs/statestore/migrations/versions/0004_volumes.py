"""volumes: vol_volumes.anonymous and vol_refs, the containers' references on volumes."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NODE = 32  # node id length


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("vol_volumes") as batch:
        batch.add_column(
            sa.Column("anonymous", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "vol_refs",
        sa.Column("node_id", sa.String(NODE), nullable=False),
        sa.Column("volume_name", sa.String(255), nullable=False),
        sa.Column("container_id", sa.String(64), nullable=False),
        # No ON DELETE: a referenced volume must not be deleted.
        sa.ForeignKeyConstraint(
            ["node_id", "volume_name"],
            ["vol_volumes.node_id", "vol_volumes.name"],
            name="fk_vol_refs_node_id_volume_name_vol_volumes",
        ),
        sa.PrimaryKeyConstraint("node_id", "volume_name", "container_id", name="pk_vol_refs"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("vol_refs")
    with op.batch_alter_table("vol_volumes") as batch:
        batch.drop_column("anonymous")
