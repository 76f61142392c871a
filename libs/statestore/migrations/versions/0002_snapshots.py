"""snapshots: img_snapshots, one row per container rootfs snapshot."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NODE = 32  # node id length
DIGEST = 71  # "sha256:" + 64 hex
STAMP = 40  # RFC 3339


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "img_snapshots",
        sa.Column("node_id", sa.String(NODE), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("image_id", sa.String(DIGEST), nullable=False),
        sa.Column("chain_ids", sa.Text(), nullable=False),
        sa.Column("created", sa.String(STAMP), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        # No ON DELETE: an image with snapshots must not be deleted.
        sa.ForeignKeyConstraint(
            ["node_id", "image_id"],
            ["img_images.node_id", "img_images.id"],
            name="fk_img_snapshots_node_id_image_id_img_images",
        ),
        sa.PrimaryKeyConstraint("node_id", "key", name="pk_img_snapshots"),
    )
    op.create_index(
        "ix_img_snapshots_node_id_image_id", "img_snapshots", ["node_id", "image_id"]
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_img_snapshots_node_id_image_id", table_name="img_snapshots")
    op.drop_table("img_snapshots")
