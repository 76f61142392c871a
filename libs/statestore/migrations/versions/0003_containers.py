"""containers: ctr_containers.state_json, the full run state of a container."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("ctr_containers") as batch:
        batch.add_column(
            sa.Column("state_json", sa.Text(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("ctr_containers") as batch:
        batch.drop_column("state_json")
