"""data_files.replaced_at: when compaction replaced a file (retention of its object)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 03:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_files") as batch:
        batch.add_column(sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("data_files") as batch:
        batch.drop_column("replaced_at")
