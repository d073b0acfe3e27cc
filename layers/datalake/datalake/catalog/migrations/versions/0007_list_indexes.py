"""indexes for the newest-first lists: jobs and sources by created_at

Listing pages sort by ``created_at DESC``; without an index every page sorted the whole
table (5 ms for 10,000 jobs on Postgres, growing with the table).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ingestion_jobs_created", "ingestion_jobs", ["created_at"])
    op.create_index("ix_data_sources_created", "data_sources", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_data_sources_created", "data_sources")
    op.drop_index("ix_ingestion_jobs_created", "ingestion_jobs")
