"""ingestion_jobs.retry_of: the job a retry rebuilds (its files are retired at commit)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingestion_jobs") as batch:
        batch.add_column(sa.Column("retry_of", sa.String(length=36), nullable=True))
        batch.create_index("ix_ingestion_jobs_retry_of", ["retry_of"])


def downgrade() -> None:
    with op.batch_alter_table("ingestion_jobs") as batch:
        batch.drop_index("ix_ingestion_jobs_retry_of")
        batch.drop_column("retry_of")
