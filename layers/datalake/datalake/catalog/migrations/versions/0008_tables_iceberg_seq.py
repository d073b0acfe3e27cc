"""datalake_tables.iceberg_seq: the last catalog change Iceberg is known to show

Commit marks a job SUCCEEDED in its catalog transaction and publishes its Iceberg
snapshot right after. The API tells a client whether the job is in Iceberg yet by
comparing the job's ``file_seq`` with this number, which every publish raises once its
Iceberg commit went through (never ahead of Iceberg: a crash before the write leaves it
behind, and the next publish raises it).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datalake_tables") as batch:
        batch.add_column(sa.Column("iceberg_seq", sa.BigInteger(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("datalake_tables") as batch:
        batch.drop_column("iceberg_seq")
