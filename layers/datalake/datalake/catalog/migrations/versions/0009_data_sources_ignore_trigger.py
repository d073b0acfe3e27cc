"""data_sources.ignore: glob patterns of uploads that start no job

A source's uploads whose name (or key below the source's prefix) matches one of these
patterns (``*.tmp``) are skipped by the upload trigger. Existing sources ignore nothing.

Revision ID: 0009_trigger
Revises: 0008
Create Date: 2026-12-08 01:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_trigger"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_sources") as batch:
        batch.add_column(sa.Column("ignore", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("data_sources") as batch:
        batch.drop_column("ignore")
