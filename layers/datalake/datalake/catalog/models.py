"""SQLAlchemy 2 models of the catalog.

Portable between Postgres and SQLite: string UUID keys, JSON columns, optimistic
concurrency through ``version`` columns, and uniqueness through plain constraints
(soft-deleted tables free their name through the nullable ``live_name`` column, since
NULLs never collide in a unique constraint).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from datalake.domain.vocabulary import (
    DEFAULT_SCHEMA_POLICY,
    BatchStatus,
    FileStatus,
    JobStatus,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A new random primary key."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class DataLakeTable(TimestampMixin, Base):
    __tablename__ = "datalake_tables"
    __table_args__ = (UniqueConstraint("namespace", "live_name", name="uq_tables_live_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    namespace: Mapped[str] = mapped_column(String(255), default="default")
    name: Mapped[str] = mapped_column(String(255))
    live_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    partitioning: Mapped[list[Any]] = mapped_column(JSON, default=list)
    schema_policy: Mapped[str] = mapped_column(String(32), default=DEFAULT_SCHEMA_POLICY)
    compatibility: Mapped[str] = mapped_column(String(32), default="BACKWARD")
    format: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    current_schema_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_column_id: Mapped[int] = mapped_column(Integer, default=0)
    # The quality gate: a job whose rejected share of records read exceeds it fails whole.
    max_rejected_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The number of the last change to the table's committed file set (a job's Commit, a
    # compaction's swap), and the highest such number whose replaced files have been
    # deleted: see datalake.catalog.snapshots.
    file_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    swept_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The last of those changes the table's Iceberg snapshot is known to show (raised by
    # each publish after its Iceberg commit; never ahead of Iceberg): services/iceberg.py.
    iceberg_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class DataLakeSchema(Base):
    __tablename__ = "datalake_schemas"
    __table_args__ = (UniqueConstraint("table_id", "version", name="uq_schemas_table_version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    table_id: Mapped[str] = mapped_column(ForeignKey("datalake_tables.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(32), default="api")  # api|ingest|rollback|create
    parent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SchemaChange(Base):
    __tablename__ = "schema_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    table_id: Mapped[str] = mapped_column(ForeignKey("datalake_tables.id"), index=True)
    schema_version: Mapped[int] = mapped_column(Integer)
    change_type: Mapped[str] = mapped_column(String(32))
    column_name: Mapped[str] = mapped_column(String(255))
    field_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    to_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    breaking: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DataLakePartition(TimestampMixin, Base):
    __tablename__ = "datalake_partitions"
    __table_args__ = (UniqueConstraint("table_id", "path", name="uq_partitions_table_path"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    table_id: Mapped[str] = mapped_column(ForeignKey("datalake_tables.id"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    record_count: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Committed files that verification found missing or not matching their checksum.
    corrupt_files: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[int] = mapped_column(Integer, default=1)


class DataFile(Base):
    __tablename__ = "data_files"
    __table_args__ = (
        UniqueConstraint("bucket", "key", name="uq_data_files_bucket_key"),
        Index("ix_data_files_table_status", "table_id", "status"),
        Index("ix_data_files_table_key", "table_id", "key", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    table_id: Mapped[str] = mapped_column(ForeignKey("datalake_tables.id"))
    job_id: Mapped[str | None] = mapped_column(String(36), index=True, nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True, nullable=True)
    partition_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    partition_path: Mapped[str] = mapped_column(String(1024), default="")
    partition_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(1024))
    record_count: Mapped[int] = mapped_column(BigInteger, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    checksum: Mapped[str] = mapped_column(String(128))
    schema_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    column_stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # PENDING (written, not visible) -> COMMITTED (visible) -> REPLACED (compacted away,
    # or retired by the commit of a retry of its job);
    # COMMITTED -> CORRUPT when verification finds the object missing or altered.
    status: Mapped[str] = mapped_column(String(16), default=FileStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When compaction replaced it: its object is kept for the retention period, so a
    # reader holding an older file list never meets a deleted object.
    replaced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The table's file_seq of the change that committed / replaced it: snapshot N holds
    # the files with committed_seq <= N < replaced_seq (datalake.catalog.snapshots).
    committed_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    replaced_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The Parquet footer as written (zlib, base64): Commit describes the file to Iceberg
    # from it (counts, sizes, bounds by field id) without reading the object.
    footer: Mapped[str | None] = mapped_column(Text, nullable=True)


class DataSource(TimestampMixin, Base):
    __tablename__ = "data_sources"
    __table_args__ = (
        UniqueConstraint("name", name="uq_data_sources_name"),
        Index("ix_data_sources_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    table_id: Mapped[str] = mapped_column(ForeignKey("datalake_tables.id"), index=True)
    bucket: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(1024), default="")
    format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Glob patterns of uploads that start no job (``*.tmp``); see domain.source_objects.
    ignore: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class IngestionJob(Base):
    __tablename__ = "ingestion_jobs"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_ingestion_jobs_idempotency_key"),
        Index("ix_ingestion_jobs_table_created", "table_id", "created_at"),
        Index("ix_ingestion_jobs_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    table_id: Mapped[str] = mapped_column(ForeignKey("datalake_tables.id"))
    source_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING, index=True)
    sources: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Source URI -> the ETag its upload event named: Plan ingests that object or fails.
    source_etags: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    max_retries: Mapped[int] = mapped_column(Integer, default=2)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=900)
    schema_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    records_read: Mapped[int] = mapped_column(BigInteger, default=0)
    records_written: Mapped[int] = mapped_column(BigInteger, default=0)
    records_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0)
    batches_total: Mapped[int] = mapped_column(Integer, default=0)
    batches_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    batches_failed: Mapped[int] = mapped_column(Integer, default=0)
    files_written: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    execution_arn: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # Set when verification found one of its committed files missing or altered.
    corrupted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The job this one retries (POST .../retry): when this job commits, the files still
    # committed by that job (and by the jobs it retried in turn) are retired, so a rebuild
    # never doubles rows.
    retry_of: Mapped[str | None] = mapped_column(String(36), index=True, nullable=True)
    # The table's file_seq of this job's Commit (catalog.snapshots): the Iceberg snapshot
    # that publishes that change carries this job's id.
    file_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    version: Mapped[int] = mapped_column(Integer, default=1)


class IngestionBatch(Base):
    __tablename__ = "ingestion_batches"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_ingestion_batches_job_seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("ingestion_jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    split: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    records_read: Mapped[int] = mapped_column(BigInteger, default=0)
    records_written: Mapped[int] = mapped_column(BigInteger, default=0)
    records_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0)
    files_written: Mapped[int] = mapped_column(Integer, default=0)
    discarded_columns: Mapped[list[Any]] = mapped_column(JSON, default=list)
    quarantine_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    correlation_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


# The Iceberg JDBC catalog's layout (migration 0006), in the project's own database. Only
# pyiceberg's SqlCatalog writes these rows; they are declared here so that the migrations
# and the test fixtures (which truncate every table of this metadata) know them.
ICEBERG_TABLES = Table(
    "iceberg_tables",
    Base.metadata,
    Column("catalog_name", String(255), primary_key=True),
    Column("table_namespace", String(255), primary_key=True),
    Column("table_name", String(255), primary_key=True),
    Column("metadata_location", String(1000), nullable=True),
    Column("previous_metadata_location", String(1000), nullable=True),
    Column("iceberg_type", String(5), nullable=True),
)
ICEBERG_NAMESPACE_PROPERTIES = Table(
    "iceberg_namespace_properties",
    Base.metadata,
    Column("catalog_name", String(255), primary_key=True),
    Column("namespace", String(255), primary_key=True),
    Column("property_key", String(255), primary_key=True),
    Column("property_value", String(1000), nullable=False),
)
