"""Run one batch of a job: read its split, conform, partition, write Parquet, record files.

Idempotent by construction: object keys are derived from the job id and the batch's
sequence number, and each attempt replaces the previous attempt's uncommitted rows, so
a redelivered message or a retried task never adds a row twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, IngestionBatch, utcnow
from datalake.config import Settings, get_settings
from datalake.domain.partitioning import PartitionField, parse_partitioning
from datalake.engine.ingest import SplitResult, ingest_splits
from datalake.engine.splits import Split, batch_from_json
from datalake.engine.store import ObjectStore
from datalake.errors import NotFound
from datalake.services.jobs import JobCancelled, get_job, partition_path
from datalake.services.schemas import schema_at
from datalake.services.tables import get_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch reports back to the workflow."""

    batch_id: str
    status: str
    records_read: int
    records_written: int
    records_rejected: int
    files: int

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class _BatchContext:
    """What a batch needs from the catalog, read in one short transaction."""

    splits: list[Split]
    seq: int
    partitioning: list[PartitionField]
    policy: str
    compression: str
    target: int
    prefix: str
    table_id: str
    options: dict[str, Any]
    schema_version: int | None


def table_prefix(namespace: str, name: str) -> str:
    """Where a table's files live in the lake bucket."""
    return f"{namespace}/{name}"


def file_prefix(job_id: str, seq: int) -> str:
    """The deterministic name stem of a batch's files."""
    return f"{job_id}-{seq:05d}"


def run_batch(
    job_id: str, batch_id: str, *, store: ObjectStore, settings: Settings | None = None
) -> BatchOutcome:
    """Ingest one batch and record its files as uncommitted.

    Raises
    ------
    JobCancelled
        When the job is no longer RUNNING (its files are deleted).
    DatalakeError
        When the split cannot be ingested; the batch is marked FAILED for this attempt.
    """
    settings = settings or get_settings()
    with session_scope() as session:
        job = get_job(session, job_id)
        batch = session.get(IngestionBatch, batch_id)
        if batch is None or batch.job_id != job_id:
            raise NotFound(f"batch {batch_id} of job {job_id} not found")
        if job.status != "RUNNING":
            raise JobCancelled(f"job {job_id} is {job.status}")
        if batch.status == "SUCCEEDED":
            return _outcome(batch)
        batch.attempts += 1
        batch.status = "RUNNING"
        batch.started_at = utcnow()
        batch.error = None
        table = get_table(session, job.table_id, include_deleted=True)
        schema = schema_at(session, table.id, job.schema_version)
        ctx = _BatchContext(
            splits=batch_from_json(batch.split),
            seq=batch.seq,
            partitioning=parse_partitioning(table.partitioning),
            policy=table.schema_policy,
            compression=str(table.format.get("compression", "snappy")),
            target=int(float(table.format.get("target_file_size_mb", 128)) * 2**20),
            prefix=table_prefix(table.namespace, table.name),
            table_id=table.id,
            options=dict(job.options),
            schema_version=job.schema_version,
        )

    try:
        result = ingest_splits(
            ctx.splits,
            schema=schema,
            partitioning=ctx.partitioning,
            store=store,
            lake_bucket=settings.lake_bucket,
            table_prefix=ctx.prefix,
            file_prefix=file_prefix(job_id, ctx.seq),
            quarantine_prefix=f"{settings.quarantine_prefix}/{ctx.prefix}/job={job_id}",
            options=ctx.options,
            schema_policy=ctx.policy,
            compression=ctx.compression,
            target_file_size_bytes=ctx.target,
        )
    except Exception as e:
        _mark_failed(batch_id, f"{type(e).__name__}: {e}")
        raise
    return _record(job_id, batch_id, ctx, result, store=store, settings=settings)


def _record(
    job_id: str,
    batch_id: str,
    ctx: _BatchContext,
    result: SplitResult,
    *,
    store: ObjectStore,
    settings: Settings,
) -> BatchOutcome:
    bucket = settings.lake_bucket
    new_keys = {f.key for f in result.files}
    with session_scope() as session:
        job = get_job(session, job_id)
        if job.status != "RUNNING":
            store.delete(bucket, sorted(new_keys))
            raise JobCancelled(f"job {job_id} is {job.status}; discarded batch output")
        batch = session.get(IngestionBatch, batch_id)
        assert batch is not None
        previous = session.scalars(select(DataFile).where(DataFile.batch_id == batch_id)).all()
        stale = [f.key for f in previous if f.key not in new_keys]
        for f in previous:
            session.delete(f)
        session.flush()
        for wf in result.files:
            session.add(
                DataFile(
                    table_id=ctx.table_id,
                    job_id=job_id,
                    batch_id=batch_id,
                    partition_path=partition_path(wf.partition),
                    partition_values=wf.partition,
                    bucket=bucket,
                    key=wf.key,
                    record_count=wf.record_count,
                    size_bytes=wf.size_bytes,
                    checksum=wf.checksum,
                    schema_version=ctx.schema_version,
                    column_stats=wf.column_stats,
                    status="PENDING",
                )
            )
        batch.status = "SUCCEEDED"
        batch.records_read = result.records_read
        batch.records_written = result.records_written
        batch.records_rejected = result.records_rejected
        batch.bytes_read = result.bytes_read
        batch.bytes_written = sum(f.size_bytes for f in result.files)
        batch.files_written = len(result.files)
        batch.discarded_columns = list(result.discarded_columns)
        batch.quarantine_key = result.quarantine_key
        batch.finished_at = utcnow()
        session.flush()
        outcome = _outcome(batch)
    if stale:
        store.delete(bucket, stale)
    return outcome


def _mark_failed(batch_id: str, error: str) -> None:
    with session_scope() as session:
        batch = session.get(IngestionBatch, batch_id)
        if batch is not None and batch.status != "SUCCEEDED":
            batch.status = "FAILED"
            batch.error = error[:4000]
            batch.finished_at = utcnow()


def retries_left(job_id: str, batch_id: str) -> bool:
    """Whether the batch may be attempted again under the job's ``max_retries``."""
    with session_scope() as session:
        job = get_job(session, job_id)
        batch = session.get(IngestionBatch, batch_id)
        return batch is not None and job.status == "RUNNING" and batch.attempts <= job.max_retries


def _outcome(batch: IngestionBatch) -> BatchOutcome:
    return BatchOutcome(
        batch_id=batch.id,
        status=batch.status,
        records_read=batch.records_read,
        records_written=batch.records_written,
        records_rejected=batch.records_rejected,
        files=batch.files_written,
    )
