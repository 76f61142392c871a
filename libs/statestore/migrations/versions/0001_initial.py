"""initial: common, images, containers, networks and volumes tables."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NODE = 32  # node id length
DIGEST = 71  # "sha256:" + 64 hex
STAMP = 40  # RFC 3339
REF = 512


def _node() -> sa.Column[str]:
    return sa.Column("node_id", sa.String(NODE), nullable=False)


def _image_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["node_id", "image_id"],
        ["img_images.node_id", "img_images.id"],
        name=f"fk_{table}_node_id_image_id_img_images",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "nodes",
        _node(),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("created", sa.String(STAMP), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name="pk_nodes"),
    )
    op.create_table(
        "object_ids",
        _node(),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "id", name="pk_object_ids"),
    )

    op.create_table(
        "img_images",
        _node(),
        sa.Column("id", sa.String(DIGEST), nullable=False),
        sa.Column("config_json", sa.LargeBinary(), nullable=False),
        sa.Column("manifest_digest", sa.String(DIGEST), nullable=False),
        sa.Column("manifest_media_type", sa.String(255), nullable=False),
        sa.Column("manifest_size", sa.BigInteger(), nullable=False),
        sa.Column("parent", sa.String(DIGEST), nullable=False),
        sa.Column("created", sa.String(STAMP), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("record_created", sa.String(STAMP), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "id", name="pk_img_images"),
    )
    op.create_index("ix_img_images_node_id_parent", "img_images", ["node_id", "parent"])
    op.create_table(
        "img_layers",
        _node(),
        sa.Column("chain_id", sa.String(DIGEST), nullable=False),
        sa.Column("diff_id", sa.String(DIGEST), nullable=False),
        sa.Column("parent", sa.String(DIGEST), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "chain_id", name="pk_img_layers"),
    )
    op.create_table(
        "img_image_layers",
        _node(),
        sa.Column("image_id", sa.String(DIGEST), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("chain_id", sa.String(DIGEST), nullable=False),
        _image_fk("img_image_layers"),
        sa.ForeignKeyConstraint(
            ["node_id", "chain_id"],
            ["img_layers.node_id", "img_layers.chain_id"],
            name="fk_img_image_layers_node_id_chain_id_img_layers",
        ),
        sa.PrimaryKeyConstraint("node_id", "image_id", "idx", name="pk_img_image_layers"),
    )
    op.create_index(
        "ix_img_image_layers_node_id_chain_id", "img_image_layers", ["node_id", "chain_id"]
    )
    op.create_table(
        "img_manifest_layers",
        _node(),
        sa.Column("image_id", sa.String(DIGEST), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(DIGEST), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _image_fk("img_manifest_layers"),
        sa.PrimaryKeyConstraint("node_id", "image_id", "idx", name="pk_img_manifest_layers"),
    )
    for table in ("img_tags", "img_digests"):
        op.create_table(
            table,
            _node(),
            sa.Column("ref", sa.String(REF), nullable=False),
            sa.Column("image_id", sa.String(DIGEST), nullable=False),
            _image_fk(table),
            sa.PrimaryKeyConstraint("node_id", "ref", name=f"pk_{table}"),
        )
        op.create_index(f"ix_{table}_node_id_image_id", table, ["node_id", "image_id"])

    op.create_table(
        "ctr_containers",
        _node(),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("image_id", sa.String(DIGEST), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("created", sa.String(STAMP), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.String(STAMP), nullable=False),
        sa.Column("finished_at", sa.String(STAMP), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "id", name="pk_ctr_containers"),
        sa.UniqueConstraint("node_id", "name", name="uq_ctr_containers_node_id_name"),
    )
    op.create_index("ix_ctr_containers_id", "ctr_containers", ["id"])

    op.create_table(
        "net_networks",
        _node(),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("driver", sa.String(64), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("created", sa.String(STAMP), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "id", name="pk_net_networks"),
        sa.UniqueConstraint("node_id", "name", name="uq_net_networks_node_id_name"),
    )
    op.create_index("ix_net_networks_id", "net_networks", ["id"])

    op.create_table(
        "vol_volumes",
        _node(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("driver", sa.String(64), nullable=False),
        sa.Column("mountpoint", sa.Text(), nullable=False),
        sa.Column("options_json", sa.Text(), nullable=False),
        sa.Column("labels_json", sa.Text(), nullable=False),
        sa.Column("created", sa.String(STAMP), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "name", name="pk_vol_volumes"),
    )


def downgrade() -> None:
    """Downgrade schema: drop every table, children first."""
    for table in (
        "vol_volumes",
        "net_networks",
        "ctr_containers",
        "img_digests",
        "img_tags",
        "img_manifest_layers",
        "img_image_layers",
        "img_layers",
        "img_images",
        "object_ids",
        "nodes",
    ):
        op.drop_table(table)
