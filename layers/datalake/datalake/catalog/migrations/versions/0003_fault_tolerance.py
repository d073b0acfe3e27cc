"""quality gate, verification marks: tables.max_rejected_ratio, data_files.verified_at,
partitions.corrupt_files, ingestion_jobs.corrupted_at, ingestion_jobs.source_etags

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datalake_tables") as batch:
        batch.add_column(sa.Column("max_rejected_ratio", sa.Float(), nullable=True))
    with op.batch_alter_table("data_files") as batch:
        batch.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("datalake_partitions") as batch:
        batch.add_column(
            sa.Column("corrupt_files", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("ingestion_jobs") as batch:
        batch.add_column(sa.Column("corrupted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("source_etags", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingestion_jobs") as batch:
        batch.drop_column("source_etags")
        batch.drop_column("corrupted_at")
    with op.batch_alter_table("datalake_partitions") as batch:
        batch.drop_column("corrupt_files")
    with op.batch_alter_table("data_files") as batch:
        batch.drop_column("verified_at")
    with op.batch_alter_table("datalake_tables") as batch:
        batch.drop_column("max_rejected_ratio")
