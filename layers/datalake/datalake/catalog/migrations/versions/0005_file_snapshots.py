"""file snapshots: datalake_tables.file_seq/swept_seq, data_files.committed_seq/replaced_seq

Existing committed (and replaced) files get sequence 0, so they belong to every snapshot
(replaced ones to none); the next change of a table is its number 1.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datalake_tables") as batch:
        batch.add_column(
            sa.Column("file_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("swept_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("data_files") as batch:
        batch.add_column(sa.Column("committed_seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("replaced_seq", sa.BigInteger(), nullable=True))
        batch.create_index("ix_data_files_table_key", ["table_id", "key", "id"], unique=False)
    op.execute(
        "UPDATE data_files SET committed_seq = 0 "
        "WHERE status IN ('COMMITTED', 'REPLACED', 'CORRUPT')"
    )
    op.execute("UPDATE data_files SET replaced_seq = 0 WHERE status = 'REPLACED'")


def downgrade() -> None:
    with op.batch_alter_table("data_files") as batch:
        batch.drop_index("ix_data_files_table_key")
        batch.drop_column("replaced_seq")
        batch.drop_column("committed_seq")
    with op.batch_alter_table("datalake_tables") as batch:
        batch.drop_column("swept_seq")
        batch.drop_column("file_seq")
