"""Run one attempt at a batch: read its splits, conform, partition, write Parquet, record.

Attempt-safe by construction:

- every attempt writes under object keys of its own (``domain.layout``), so no two
  attempts (a redelivered message, a retried task, two workers at once) share a key;
- the catalog takes exactly one attempt's files as the batch's: the first to record
  wins by compare-and-set on the batch row, under the job row's lock, so a cancel
  and a record are ordered one way or the other, never interleaved;
- an attempt that loses, or finds the job no longer RUNNING, deletes only its own
  objects; no code path here deletes a key another attempt wrote.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, IngestionBatch, IngestionJob, utcnow
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.config import Settings, get_settings
from datalake.domain.file_sizes import target_bytes
from datalake.domain.formats import TableFormat
from datalake.domain.layout import (
    attempt_file_prefix,
    job_quarantine_prefix,
    new_attempt,
    table_prefix,
)
from datalake.domain.partitioning import PartitionField, parse_partitioning
from datalake.domain.schema import Schema
from datalake.domain.vocabulary import BatchStatus, FileStatus, JobStatus
from datalake.engine.ingest import SplitResult, ingest_splits
from datalake.engine.splits import Split, batch_from_json
from datalake.engine.store import ObjectStore
from datalake.errors import BatchTimeout, DatalakeError, NotFound
from datalake.services.jobs import JobCancelled, get_job, partition_path
from datalake.services.schemas import schema_at
from datalake.services.tables import get_table

__all__ = ["BatchOutcome", "lock_job", "retries_left", "run_batch"]

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
    quarantine_prefix: str
    table_id: str
    options: dict[str, Any]
    schema_version: int | None


def lock_job(session: Session, job_id: str) -> IngestionJob:
    """Read a job row and hold its lock to the end of the transaction.

    On Postgres this is ``SELECT ... FOR UPDATE``, the lock a cancel's or a commit's
    update of the same row also takes; SQLite transactions here begin ``IMMEDIATE``
    and so hold the database's write lock already.

    Raises
    ------
    NotFound
        When the job does not exist.
    """
    job = SqlCatalog(session).lock_job(job_id)
    if job is None:
        raise NotFound(f"ingestion job {job_id} not found")
    return job


def run_batch(
    job_id: str,
    batch_id: str,
    *,
    store: ObjectStore,
    settings: Settings | None = None,
    on_progress: Callable[[], None] | None = None,
    timeout_seconds: float | None = None,
) -> BatchOutcome:
    """Make one attempt at a batch and record its files as uncommitted (if it wins).

    Parameters
    ----------
    on_progress:
        Called between streaming chunks (the worker heartbeats its task token here).
    timeout_seconds:
        This attempt's budget, counted from now (pickup), not from when the message was
        queued; ``None`` takes the job's ``timeout_seconds``.

    Returns
    -------
    BatchOutcome
        The batch's outcome: this attempt's, or the earlier winner's when another
        attempt recorded first (this one's objects are then deleted).

    Raises
    ------
    JobCancelled
        When the job is no longer RUNNING (this attempt's objects are deleted).
    BatchTimeout
        When the attempt ran past its budget (its objects are deleted).
    DatalakeError
        When the splits cannot be ingested; the batch is marked FAILED for this attempt.
    """
    settings = settings or get_settings()
    started = time.monotonic()
    attempt = new_attempt()
    with session_scope() as session:
        catalog = SqlCatalog(session)
        job = get_job(session, job_id)
        batch = catalog.get(IngestionBatch, batch_id)
        if batch is None or batch.job_id != job_id:
            raise NotFound(f"batch {batch_id} of job {job_id} not found")
        if job.status != JobStatus.RUNNING:
            raise JobCancelled(f"job {job_id} is {job.status}")
        # Conditional, so a concurrent winner's SUCCEEDED (or a cancel) is never overwritten.
        if not catalog.start_batch_attempt(
            batch_id, status=BatchStatus.RUNNING, started_at=utcnow(), error=None
        ):
            batch = _batch(session, batch_id)
            if batch.status == BatchStatus.CANCELLED:
                raise JobCancelled(f"batch {batch.seq} of job {job_id} was cancelled")
            return _outcome(batch)
        batch = _batch(session, batch_id)
        budget = float(timeout_seconds if timeout_seconds is not None else job.timeout_seconds)
        try:
            ctx, schema = _context(session, job, batch, settings)
        except DatalakeError as e:
            # Recorded in this attempt's own transaction, so the batch says why it failed.
            catalog.update_unfinished_batch(
                batch_id, status=BatchStatus.FAILED, error=_describe(e), finished_at=utcnow()
            )
            refused: DatalakeError | None = e
        else:
            refused = None
    if refused is not None:
        raise refused

    def progress() -> None:
        if time.monotonic() - started > budget:
            raise BatchTimeout(
                f"batch {ctx.seq} of job {job_id} ran past its {budget:g} s budget"
            )
        if on_progress is not None:
            on_progress()

    try:
        result = ingest_splits(
            ctx.splits,
            schema=schema,
            partitioning=ctx.partitioning,
            store=store,
            lake_bucket=settings.lake_bucket,
            table_prefix=ctx.prefix,
            file_prefix=attempt_file_prefix(job_id, ctx.seq, attempt),
            quarantine_prefix=ctx.quarantine_prefix,
            options=ctx.options,
            schema_policy=ctx.policy,
            compression=ctx.compression,
            target_file_size_bytes=ctx.target,
            on_chunk=progress,
        )
    except Exception as e:  # the engine deleted what this attempt wrote
        _mark_failed(batch_id, _describe(e))
        raise
    return _record(job_id, batch_id, ctx, result, store=store, settings=settings)


def _context(
    session: Session, job: IngestionJob, batch: IngestionBatch, settings: Settings
) -> tuple[_BatchContext, Schema]:
    """What the attempt needs from the job's table, and the schema it conforms to."""
    table = get_table(session, job.table_id, include_deleted=True)
    schema = schema_at(session, table.id, job.schema_version)
    ctx = _BatchContext(
        splits=batch_from_json(batch.split),
        seq=batch.seq,
        partitioning=parse_partitioning(table.partitioning),
        policy=table.schema_policy,
        compression=TableFormat.of(table.format).compression,
        target=target_bytes(table.format),
        prefix=table_prefix(table.namespace, table.name),
        quarantine_prefix=job_quarantine_prefix(
            settings.quarantine_prefix, table.namespace, table.name, job.id
        ),
        table_id=table.id,
        options=dict(job.options),
        schema_version=job.schema_version,
    )
    return ctx, schema


def _describe(error: BaseException) -> str:
    """A failed attempt's error as its batch (and then its job) records it."""
    return f"{type(error).__name__}: {error}"[:4000]


def _own_keys(result: SplitResult) -> list[str]:
    keys = [f.key for f in result.files]
    if result.quarantine_key:
        keys.append(result.quarantine_key)
    return keys


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
    own = _own_keys(result)
    try:
        with session_scope() as session:
            job = lock_job(session, job_id)
            if job.status != JobStatus.RUNNING:
                status = job.status
                won = None
                # Under the job's lock: the batch says it was cut off, not still RUNNING.
                SqlCatalog(session).update_unfinished_batch(
                    batch_id, status=BatchStatus.CANCELLED, finished_at=utcnow()
                )
            else:
                won = _claim(session, job_id, batch_id, ctx, result, bucket)
                outcome = _outcome(_batch(session, batch_id))
    except Exception:
        # The commit's fate is unknown (a dropped connection after COMMIT was sent):
        # only keys the catalog does not list may go; the rest is the sweep's.
        _delete_unrecorded(store, bucket, own)
        raise
    if won is None:
        store.delete(bucket, own)
        raise JobCancelled(f"job {job_id} is {status}; discarded this attempt's output")
    if not won:
        log.warning(
            "another attempt recorded batch %s of job %s first; deleted this attempt's %d "
            "object(s)", ctx.seq, job_id, len(own),
        )
        store.delete(bucket, own)
    return outcome


def _claim(
    session: Session,
    job_id: str,
    batch_id: str,
    ctx: _BatchContext,
    result: SplitResult,
    bucket: str,
) -> bool:
    """Make this attempt's files the batch's, unless another attempt did first."""
    catalog = SqlCatalog(session)
    claimed = catalog.update_unfinished_batch(
        batch_id,
        status=BatchStatus.SUCCEEDED,
        records_read=result.records_read,
        records_written=result.records_written,
        records_rejected=result.records_rejected,
        bytes_read=result.bytes_read,
        bytes_written=sum(f.size_bytes for f in result.files),
        files_written=len(result.files),
        discarded_columns=list(result.discarded_columns),
        quarantine_key=result.quarantine_key,
        error=None,
        finished_at=utcnow(),
    )
    if not claimed:
        return False
    for wf in result.files:
        catalog.add(
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
                footer=wf.footer,
                status=FileStatus.PENDING,
            )
        )
    catalog.flush()
    return True


def _batch(session: Session, batch_id: str) -> IngestionBatch:
    batch = SqlCatalog(session).fresh_batch(batch_id)
    assert batch is not None
    return batch


def _delete_unrecorded(store: ObjectStore, bucket: str, keys: list[str]) -> None:
    try:
        with session_scope() as session:
            catalog = SqlCatalog(session)
            recorded = catalog.recorded_keys(bucket, keys)
            winner_quarantine = catalog.recorded_quarantine_keys(keys)
        store.delete(bucket, [k for k in keys if k not in recorded | winner_quarantine])
    except Exception:  # the catalog is unreachable: leave them to the job's sweep
        log.warning("could not check %d object(s) against the catalog; left for the sweep",
                    len(keys), exc_info=True)


def _mark_failed(batch_id: str, error: str) -> None:
    with session_scope() as session:
        SqlCatalog(session).update_unfinished_batch(
            batch_id, status=BatchStatus.FAILED, error=error, finished_at=utcnow()
        )


def retries_left(job_id: str, batch_id: str) -> bool:
    """Whether the batch may be attempted again under the job's ``max_retries``."""
    with session_scope() as session:
        job = get_job(session, job_id)
        batch = SqlCatalog(session).get(IngestionBatch, batch_id)
        return (
            batch is not None
            and job.status == JobStatus.RUNNING
            and batch.attempts <= job.max_retries
        )


def _outcome(batch: IngestionBatch) -> BatchOutcome:
    return BatchOutcome(
        batch_id=batch.id,
        status=batch.status,
        records_read=batch.records_read,
        records_written=batch.records_written,
        records_rejected=batch.records_rejected,
        files=batch.files_written,
    )
