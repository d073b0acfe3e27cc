"""iceberg: the Iceberg SQL (JDBC) catalog's tables, and data_files.footer

``iceberg_tables`` and ``iceberg_namespace_properties`` are the layout of Iceberg's JDBC
catalog (the one pyiceberg's SqlCatalog, Spark's and Trino's JDBC catalogs read), in its
v1 form (with ``iceberg_type``), so the tables are published as Iceberg in the project's
own database. ``data_files.footer`` keeps the Parquet footer the writer produced
(zlib + base64), from which Commit describes the file to Iceberg without reading it;
``ingestion_jobs.file_seq`` the table change of a job's Commit (its Iceberg snapshot).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-14 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iceberg_tables",
        sa.Column("catalog_name", sa.String(255), nullable=False),
        sa.Column("table_namespace", sa.String(255), nullable=False),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("metadata_location", sa.String(1000), nullable=True),
        sa.Column("previous_metadata_location", sa.String(1000), nullable=True),
        sa.Column("iceberg_type", sa.String(5), nullable=True),
        sa.PrimaryKeyConstraint(
            "catalog_name", "table_namespace", "table_name", name="pk_iceberg_tables"
        ),
    )
    op.create_table(
        "iceberg_namespace_properties",
        sa.Column("catalog_name", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("property_key", sa.String(255), nullable=False),
        sa.Column("property_value", sa.String(1000), nullable=False),
        sa.PrimaryKeyConstraint(
            "catalog_name", "namespace", "property_key", name="pk_iceberg_namespace_properties"
        ),
    )
    with op.batch_alter_table("data_files") as batch:
        batch.add_column(sa.Column("footer", sa.Text(), nullable=True))
    with op.batch_alter_table("ingestion_jobs") as batch:
        batch.add_column(sa.Column("file_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingestion_jobs") as batch:
        batch.drop_column("file_seq")
    with op.batch_alter_table("data_files") as batch:
        batch.drop_column("footer")
    op.drop_table("iceberg_namespace_properties")
    op.drop_table("iceberg_tables")
