"""Ingestion jobs, control plane: create, start, cancel, commit, abort (no pyarrow here).

The catalog's job status is the authority on a job's fate: Step Functions drives the
work, but workers and Commit re-check the status, so a cancel is final even where an
execution cannot be stopped at once (LocalStack keeps callback tasks alive).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from datalake.catalog.db import session_scope
from datalake.catalog.models import (
    DataFile,
    DataLakePartition,
    DataSource,
    IngestionBatch,
    IngestionJob,
    utcnow,
)
from datalake.catalog.snapshots import begin_change
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.config import Settings, get_settings
from datalake.domain.formats import IngestOptions
from datalake.domain.layout import (
    job_file_marker,
    job_plan_key,
    job_quarantine_prefix,
    table_prefix,
)
from datalake.domain.limits import bucket_problem, key_problem
from datalake.domain.partitioning import hive_path
from datalake.domain.stats import merge_stats
from datalake.domain.vocabulary import BatchStatus, FileStatus, JobStatus, SourceFormat
from datalake.errors import (
    CommitConflict,
    Conflict,
    InvalidInput,
    NotFound,
    QualityGateFailed,
    TransientError,
)
from datalake.ports import Catalog, ObjectDeleter, ObjectSweeper, Orchestrator
from datalake.services import audit
from datalake.services.tables import get_table

if TYPE_CHECKING:
    from sqlalchemy import Row

FORMATS: tuple[str, ...] = tuple(SourceFormat)
# Plain strings: they are shown in error messages as a list.
STATUSES = tuple(s.value for s in JobStatus)
FINISHED = tuple(s.value for s in JobStatus if s.finished)
#: A job not yet finished: what a cancel or an abort stops.
UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING)
#: A job whose files are committed: it keeps them and can only finish (SUCCEEDED).
COMMITTED = (JobStatus.COMMITTING, JobStatus.SUCCEEDED)
#: Attempts at COMMITTING -> SUCCEEDED when the job's row changes underneath.
FINISH_ATTEMPTS = 5

log = logging.getLogger(__name__)


class JobCancelled(Conflict):
    """The job was cancelled (or failed) while work on it was still under way."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key.

    Raises
    ------
    InvalidInput
        When the string is not an ``s3://`` URI with a bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidInput(f"source {uri!r} must be an s3://bucket/key-or-prefix URI")
    return parsed.netloc, parsed.path.lstrip("/")


def check_source_location(bucket: str, key: str, settings: Settings | None = None) -> None:
    """Refuse a bucket that is malformed or not allowed as a source, and a bad key.

    Raises
    ------
    InvalidInput
        When the bucket breaks S3's naming rules, is the lake bucket or is outside the
        configured allow-list (``DATALAKE_SOURCE_BUCKETS``), or the key is not a valid key.
    """
    settings = settings or get_settings()
    problem = bucket_problem(bucket)
    if problem:
        raise InvalidInput(f"bucket {bucket!r} {problem}")
    if not settings.source_bucket_allowed(bucket):
        raise InvalidInput(
            f"bucket {bucket!r} is not an allowed source bucket: sources read the landing "
            f"bucket {settings.landing_bucket!r} or those in DATALAKE_SOURCE_BUCKETS, never "
            "the lake bucket"
        )
    problem = key_problem(key)
    if problem:
        raise InvalidInput(f"key {key[:80]!r} {problem}")


def validate_options(options: dict[str, Any] | None, settings: Settings) -> dict[str, Any]:
    """Validate a job's ingestion options (:class:`IngestOptions`) and fill in the defaults."""
    return IngestOptions.parse(
        options,
        batch_size=settings.default_batch_size,
        split_size_mb=settings.default_split_size_mb,
    ).to_json()


def validate_source_format(format: str | None) -> SourceFormat | None:
    """A job's or source's ``format`` as the engine reads it (aliases such as ``json``)."""
    return None if format is None else SourceFormat.parse(format)


def create_job(
    session: Session,
    *,
    table_id: str,
    sources: list[str],
    format: str | None = None,
    options: dict[str, Any] | None = None,
    max_retries: int | None = None,
    timeout_seconds: int | None = None,
    source_id: str | None = None,
    idempotency_key: str | None = None,
    source_etags: dict[str, str] | None = None,
    actor: str = "system",
    correlation_id: str | None = None,
    settings: Settings | None = None,
) -> IngestionJob:
    """Create a PENDING job for a live table.

    ``source_etags`` pins exact-key sources to the object an upload event named: Plan
    refuses an object overwritten since (its own event starts its own job). ``actor``
    and ``correlation_id`` go on the job and its ``job.create`` audit event.

    Raises
    ------
    InvalidInput
        For bad sources, format or options.
    NotFound
        When the table does not exist or is deleted.
    Conflict
        When ``idempotency_key`` was used already (the caller may look that job up).
    """
    settings = settings or get_settings()
    get_table(session, table_id)
    if not sources or not isinstance(sources, list):
        raise InvalidInput("sources must be a non-empty list of s3:// URIs")
    for uri in sources:
        check_source_location(*parse_s3_uri(uri), settings)
    source_format = validate_source_format(format)
    retries = settings.default_max_retries if max_retries is None else max_retries
    if not 0 <= retries <= 10:
        raise InvalidInput("max_retries must be between 0 and 10")
    timeout = settings.default_timeout_seconds if timeout_seconds is None else timeout_seconds
    if not 10 <= timeout <= 86_400:
        raise InvalidInput("timeout_seconds must be between 10 and 86400")
    job = IngestionJob(
        table_id=table_id,
        sources=list(sources),
        format=source_format,
        options=validate_options(options, settings),
        max_retries=retries,
        timeout_seconds=timeout,
        source_id=source_id,
        idempotency_key=idempotency_key,
        source_etags=dict(source_etags) if source_etags else None,
        created_by=actor,
    )
    SqlCatalog(session).insert(
        job, conflict=f"a job with idempotency key {idempotency_key!r} exists"
    )
    audit.record(
        session,
        actor=actor,
        action="job.create",
        entity_type="job",
        entity_id=job.id,
        details={"table_id": job.table_id, "sources": job.sources},
        correlation_id=correlation_id,
    )
    return job


def get_job(session: Session, job_id: str) -> IngestionJob:
    """Return a job by id; raise NotFound otherwise."""
    job = SqlCatalog(session).job(job_id)
    if job is None:
        raise NotFound(f"ingestion job {job_id} not found")
    return job


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    table_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Row[Any]], int]:
    """Jobs matching the filters, newest first, and their total count (read-only rows
    with a job's columns as attributes)."""
    wanted: JobStatus | None = None
    if status:
        if status.upper() not in STATUSES:
            raise InvalidInput(f"status must be one of {list(STATUSES)}")
        wanted = JobStatus(status.upper())
    return SqlCatalog(session).jobs_page(
        status=wanted,
        table_id=table_id,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        offset=offset,
    )


def live_counters(session: Session, job: Any) -> dict[str, int]:
    """A RUNNING job's counters so far, summed from its batch rows (``records_read``,
    ``records_written``, ``records_rejected``, ``bytes_read``, ``bytes_written``,
    ``files_written``, ``batches_succeeded``, ``batches_failed``); ``{}`` for any other
    status, whose row holds its final counters (rolled up at Commit or Abort).

    ``job`` is a job row or a page's row (anything with ``id`` and ``status``).
    """
    if job.status != JobStatus.RUNNING:
        return {}
    return SqlCatalog(session).batch_counters([job.id]).get(job.id, {})


def with_live_counters(session: Session, rows: list[Row[Any]]) -> list[dict[str, Any]]:
    """A page of :func:`list_jobs` as dicts, each RUNNING job's counters from its batches
    (:func:`live_counters`): one grouped statement for the page's running jobs, and none
    for a page without any, so a page of finished jobs costs what it did."""
    running = [r.id for r in rows if r.status == JobStatus.RUNNING]
    live = SqlCatalog(session).batch_counters(running) if running else {}
    out = []
    for r in rows:
        d = r._asdict()
        d.update(live.get(r.id, {}))
        out.append(d)
    return out


def list_batches(
    session: Session, job_id: str, *, limit: int = 1000, offset: int = 0
) -> tuple[list[IngestionBatch], int]:
    """A job's batches in plan order, and their total count."""
    get_job(session, job_id)
    return SqlCatalog(session).batches_page(job_id, limit=limit, offset=offset)


def transition(
    session: Session,
    job: IngestionJob,
    *,
    expect: tuple[JobStatus, ...],
    to: JobStatus,
    **fields: Any,
) -> None:
    """Move a job to status ``to`` if it is in one of ``expect``, optimistically.

    Raises
    ------
    CommitConflict
        When the job changed underneath (another process moved it first).
    """
    if not SqlCatalog(session).set_job_status(job, expect=expect, to=to, **fields):
        wanted = tuple(str(s) for s in expect)
        raise CommitConflict(f"job {job.id} changed concurrently (wanted {wanted} -> {to})")


def start_job(
    session: Session,
    job_id: str,
    *,
    orchestrator: Orchestrator,
    actor: str = "system",
    correlation_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> IngestionJob:
    """Start a PENDING job's workflow; it becomes RUNNING.

    ``correlation_id`` (default: the job's id) goes into the execution's input: the state
    machine hands it to Plan, every batch message, Commit and Abort, whose log lines
    carry it, so one request's job can be followed through every function's logs.
    ``actor`` and ``correlation_id`` go on the ``job.start`` audit event, whose details
    are the execution's ARN and ``details`` (e.g. the upload that started the job).

    Raises
    ------
    Conflict
        When the job is not PENDING.
    """
    job = get_job(session, job_id)
    if job.status != JobStatus.PENDING:
        raise Conflict(f"job {job_id} is {job.status}; only a PENDING job can be started")
    get_table(session, job.table_id)
    transition(
        session, job, expect=(JobStatus.PENDING,), to=JobStatus.RUNNING, started_at=utcnow()
    )
    # RUNNING is committed before the workflow starts, so a fast Plan on another
    # connection never reads PENDING; a start that fails puts the job back to PENDING.
    session.commit()
    try:
        arn = orchestrator.start(
            job.id,
            {
                "job_id": job.id,
                "timeout_seconds": job.timeout_seconds,
                "correlation_id": correlation_id or job.id,
            },
        )
    except Exception as e:
        transition(
            session, job, expect=(JobStatus.RUNNING,), to=JobStatus.PENDING, started_at=None
        )
        session.commit()
        raise TransientError(
            f"could not start the workflow of job {job_id} ({type(e).__name__}: {e}); "
            "it is PENDING again and can be started again"
        ) from e
    job.execution_arn = arn
    SqlCatalog(session).flush()
    audit.record(
        session,
        actor=actor,
        action="job.start",
        entity_type="job",
        entity_id=job.id,
        details={"execution_arn": arn, **(details or {})},
        correlation_id=correlation_id,
    )
    return job


def cancel_job(
    session: Session,
    job_id: str,
    *,
    orchestrator: Orchestrator | None,
    store: ObjectSweeper | None,
    actor: str = "system",
    correlation_id: str | None = None,
) -> IngestionJob:
    """Cancel a PENDING or RUNNING job: nothing of it will be committed.

    The cancel is committed first, under the job row's lock that workers record under,
    so a batch recorded before it is discarded here and one recorded after it is refused.
    Stopping the workflow and deleting the job's objects come after, best effort: a
    failure of either leaves the job CANCELLED (the catalog is the authority; workers
    and Commit refuse it) and its objects for the Abort step or, where no Abort runs,
    the optimize schedule (:func:`clean_up_finished_jobs`). The ``job.cancel`` audit
    event (``actor``, ``correlation_id``) is committed with the cancel.

    Raises
    ------
    Conflict
        When the job has finished already, or is COMMITTING (its files are committed).
    """
    job = get_job(session, job_id)
    if job.status == JobStatus.COMMITTING:
        raise Conflict(
            f"job {job_id} has committed its files and is being published; it cannot be "
            "cancelled (revert it once it has SUCCEEDED)"
        )
    if job.status not in UNFINISHED:
        raise Conflict(f"job {job_id} is {job.status} and cannot be cancelled")
    now = utcnow()
    transition(
        session,
        job,
        expect=UNFINISHED,
        to=JobStatus.CANCELLED,
        finished_at=now,
        error="cancelled by " + actor,
    )
    # In the cancel's own transaction: no batch of the job reads PENDING or RUNNING after.
    SqlCatalog(session).cancel_unfinished_batches(job.id, at=now)
    audit.record(
        session,
        actor=actor,
        action="job.cancel",
        entity_type="job",
        entity_id=job.id,
        correlation_id=correlation_id,
    )
    session.commit()
    if orchestrator is not None and job.execution_arn:
        try:
            orchestrator.stop(job.execution_arn, reason="cancelled")
        except Exception:
            log.warning("could not stop the workflow of cancelled job %s", job_id, exc_info=True)
    try:
        discard_uncommitted(session, job, store)
        if store is not None:
            sweep_job_objects(session, job, store)
        session.commit()
    except Exception:
        session.rollback()
        log.warning("cleanup of cancelled job %s left for later", job_id, exc_info=True)
    return job


def discard_uncommitted(session: Session, job: IngestionJob, deleter: ObjectDeleter | None) -> int:
    """Delete a job's written-but-uncommitted files, objects first, then their rows."""
    catalog: Catalog = SqlCatalog(session)
    files = catalog.job_files(job.id, status=FileStatus.PENDING)
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for f in files:
        by_bucket[f.bucket].append(f.key)
    if deleter is not None:
        for bucket, keys in by_bucket.items():
            deleter.delete(bucket, keys)
    for f in files:
        catalog.delete(f)
    catalog.flush()
    return len(files)


def sweep_job_objects(
    session: Session, job: IngestionJob, store: ObjectSweeper, settings: Settings | None = None
) -> int:
    """Delete every object written for ``job`` that the catalog does not list as its own.

    For a cancelled job that is everything it wrote, data and quarantine; for a failed
    one its data (the quarantine its batches recorded stays, for ``rejects``, until the
    lake's quarantine lifecycle rule expires it); for a succeeded one, the leftovers of
    attempts that crashed after uploading (a winner's files and quarantine objects are
    listed, so they stay).
    """
    settings = settings or get_settings()
    bucket = settings.lake_bucket
    table = get_table(session, job.table_id, include_deleted=True)
    catalog: Catalog = SqlCatalog(session)
    keep = catalog.job_file_keys(job.id)
    if job.status in (*COMMITTED, JobStatus.FAILED):
        keep.update(catalog.batch_quarantine_keys(job.id))
    marker = job_file_marker(job.id)
    doomed = [
        o.key
        for o in store.list(bucket, table_prefix(table.namespace, table.name) + "/")
        if o.key.rsplit("/", 1)[-1].startswith(marker) and o.key not in keep
    ]
    quarantine = job_quarantine_prefix(
        settings.quarantine_prefix, table.namespace, table.name, job.id
    )
    doomed += [o.key for o in store.list(bucket, quarantine + "/") if o.key not in keep]
    if job.status != JobStatus.RUNNING:
        doomed.append(job_plan_key(job.id))
    if doomed:
        store.delete(bucket, doomed)
    return len(doomed)


def abort_job(
    session: Session,
    job_id: str,
    *,
    error: str,
    store: ObjectSweeper | None,
    settings: Settings | None = None,
) -> IngestionJob:
    """Mark a job FAILED after its workflow gave up, and delete what it wrote.

    The job's ``error`` is its first failed batch's (``"<class>: <message>"``, in plan
    order) when a batch failed, else ``error`` (what the workflow caught: a Plan error,
    the quality gate, ...). Batches that will never run become CANCELLED. Data objects go;
    a FAILED job's quarantine is kept, so ``rejects`` can show why it failed (the lake's
    quarantine lifecycle rule expires it); a cancelled job stays CANCELLED and loses its
    quarantine too; a committing or succeeded one is left as it is (its files are
    committed: it can only finish, which :func:`datalake.services.abort.abort_workflow`
    tries).
    """
    job = get_job(session, job_id)
    catalog = SqlCatalog(session)
    if job.status in UNFINISHED:
        now = utcnow()
        cause = catalog.first_batch_error(job.id) or error
        transition(
            session,
            job,
            expect=UNFINISHED,
            to=JobStatus.FAILED,
            finished_at=now,
            error=cause[:4000],
        )
        catalog.cancel_unfinished_batches(job.id, at=now)
    if job.status not in COMMITTED:
        discard_uncommitted(session, job, store)
        if store is not None:
            sweep_job_objects(session, job, store, settings)
        _rollup_batches(session, job)
    return job


def clean_up_finished_jobs(store: ObjectSweeper, *, limit: int = 100) -> list[str]:
    """Finish the clean-up of failed and cancelled jobs whose own clean-up did not end
    (an S3 error during a cancel: on AWS a stopped execution runs no Abort step): their
    uncommitted file rows say so. Run by the optimize schedule; returns the jobs cleaned.
    """
    with session_scope() as session:
        ids = SqlCatalog(session).unclean_finished_jobs(limit=limit)
    cleaned = []
    for job_id in ids:
        try:
            with session_scope() as session:
                job = get_job(session, job_id)
                discard_uncommitted(session, job, store)
                sweep_job_objects(session, job, store)
            cleaned.append(job_id)
        except Exception:
            log.warning("clean-up of job %s failed again; left for the next run", job_id,
                        exc_info=True)
    return cleaned


def _rollup_batches(session: Session, job: IngestionJob) -> None:
    catalog: Catalog = SqlCatalog(session)
    batches = catalog.batches_of(job.id)
    job.batches_total = len(batches)
    job.batches_succeeded = sum(1 for b in batches if b.status == BatchStatus.SUCCEEDED)
    job.batches_failed = sum(1 for b in batches if b.status == BatchStatus.FAILED)
    job.records_read = sum(b.records_read for b in batches)
    job.records_rejected = sum(b.records_rejected for b in batches)
    job.bytes_read = sum(b.bytes_read for b in batches)
    catalog.flush()


def partition_path(values: dict[str, Any]) -> str:
    """The Hive path of a partition's values, as the engine writes it ('' if unpartitioned)."""
    return hive_path(values)


def commit_job(session: Session, job_id: str) -> IngestionJob:
    """Commit a job's files in this one transaction and update partition stats.

    The job becomes COMMITTING (its files are in the catalog's table; its Iceberg
    snapshot is still to be published, by :func:`publish_job`, which then marks it
    SUCCEEDED), or SUCCEEDED at once when Iceberg publishing is off (the catalog is then
    the only reader). Idempotent: a COMMITTING or SUCCEEDED job is left as it is.

    Raises
    ------
    JobCancelled
        When the job was cancelled or failed; nothing is published.
    Conflict
        When a batch has not succeeded.
    CommitConflict
        When a concurrent commit touched the same rows; the caller retries.
    """
    catalog: Catalog = SqlCatalog(session)
    job = get_job(session, job_id)
    if job.status in COMMITTED:
        return job
    if job.status != JobStatus.RUNNING:
        raise JobCancelled(f"job {job_id} is {job.status}; refusing to commit")
    batches = catalog.batches_of(job.id)
    unfinished = [b.seq for b in batches if b.status != BatchStatus.SUCCEEDED]
    if unfinished:
        raise Conflict(f"job {job_id} has batches not succeeded: {unfinished[:20]}")
    check_quality(
        get_table(session, job.table_id, include_deleted=True).max_rejected_ratio,
        read=sum(b.records_read for b in batches),
        rejected=sum(b.records_rejected for b in batches),
    )
    files = catalog.job_files(job.id, status=FileStatus.PENDING)
    # The table's next file sequence number (and its row lock, taken before any partition
    # row's): snapshots up to the previous number never see these files.
    change = begin_change(session, job.table_id)
    now = change.at
    if job.retry_of is not None:
        # A retry rebuilds an older job's data: that job's still-committed files leave
        # in this same transaction and at this same number, so no reader ever sees both
        # (see services/supersede.py).
        from datalake.services.supersede import retire_superseded

        retire_superseded(session, job, now=now, seq=change.seq)
    grouped: dict[str, list[DataFile]] = defaultdict(list)
    for f in files:
        grouped[f.partition_path].append(f)
    for path, group in sorted(grouped.items()):
        part = catalog.partition_by_path(job.table_id, path)
        if part is None:
            part = DataLakePartition(
                table_id=job.table_id, path=path, values=group[0].partition_values, stats={}
            )
            catalog.add(part)
            catalog.flush()
        # The version check makes the counts read here the row's current ones.
        if not catalog.compare_and_set(
            part,
            record_count=part.record_count + sum(f.record_count for f in group),
            file_count=part.file_count + len(group),
            size_bytes=part.size_bytes + sum(f.size_bytes for f in group),
            stats=merge_stats(part.stats, [f.column_stats for f in group]),
            updated_at=now,
        ):
            raise CommitConflict(f"partition {path} changed concurrently")
        for f in group:
            f.status = FileStatus.COMMITTED
            f.committed_at = now
            f.committed_seq = change.seq
            f.partition_id = part.id
    published_later = get_settings().iceberg_catalog != "none"
    transition(
        session,
        job,
        expect=(JobStatus.RUNNING,),
        # The same compare-and-set a cancel makes: of the two, one wins; once this one
        # has, the job can only finish.
        to=JobStatus.COMMITTING if published_later else JobStatus.SUCCEEDED,
        finished_at=None if published_later else now,
        records_read=sum(b.records_read for b in batches),
        records_written=sum(b.records_written for b in batches),
        records_rejected=sum(b.records_rejected for b in batches),
        bytes_read=sum(b.bytes_read for b in batches),
        bytes_written=sum(f.size_bytes for f in files),
        files_written=len(files),
        batches_total=len(batches),
        batches_succeeded=len(batches),
        batches_failed=0,
        file_seq=change.seq,
    )
    return job


def check_quality(max_rejected_ratio: float | None, *, read: int, rejected: int) -> None:
    """The table's quality gate: refuse a job that rejected too large a share of its records.

    Raises
    ------
    QualityGateFailed
        When ``rejected / read`` exceeds ``max_rejected_ratio``.
    """
    if max_rejected_ratio is None or read == 0:
        return
    if rejected / read > max_rejected_ratio:
        raise QualityGateFailed(
            f"{rejected} of {read} records rejected ({rejected / read:.2%}), over the "
            f"table's max_rejected_ratio of {max_rejected_ratio:.2%}; nothing committed"
        )


def _between_commits(job: IngestionJob) -> None:
    """Runs after the catalog's commit of a job and before its Iceberg publish: nothing
    in production; the crash-consistency tests put a fault here."""


def iceberg_published(session: Session, job: IngestionJob) -> bool | None:
    """Whether a committed job's rows are in its table's Iceberg snapshot (None: the job
    is not committed, predates change numbers, or Iceberg publishing is off).

    Always true of a SUCCEEDED job: a job is SUCCEEDED only once its snapshot is
    published (:func:`publish_job`); false while it is COMMITTING.
    """
    if job.status not in COMMITTED or job.file_seq is None:
        return None
    if get_settings().iceberg_catalog == "none":
        return None
    return SqlCatalog(session).iceberg_seq_of(job.table_id) >= job.file_seq


def publish_iceberg(table_id: str, *, attempts: int | None = None) -> None:
    """Publish the table's committed changes as Iceberg snapshots (services/iceberg.py),
    trying up to ``attempts`` times on Iceberg conflicts (default: the publisher's own),
    then mark SUCCEEDED every COMMITTING job of the table the publish has shown
    (:func:`finish_published_jobs`): whichever publish shows a job's snapshot first,
    its own Commit's, another job's, compaction's or the optimize schedule's, ends it.

    Raises
    ------
    TransientError
        When Iceberg could not be brought up to date: the state machine retries Commit,
        whose retry publishes what this one did not (the catalog's commit stands).
    """
    from datalake.services import iceberg

    if not iceberg.enabled():
        return
    try:
        if attempts is None:
            iceberg.publish_table(table_id)
        else:
            iceberg.publish_table(table_id, attempts=attempts)
    except Exception as e:
        raise TransientError(
            f"committed, but not yet published as Iceberg ({type(e).__name__}: {e}); "
            "a retry publishes it"
        ) from e
    finish_published_jobs(table_id)


def finish_published_jobs(table_id: str) -> list[str]:
    """Mark SUCCEEDED the table's COMMITTING jobs whose change Iceberg shows (the table's
    ``iceberg_seq``, recorded only after an Iceberg commit); return their ids.

    Idempotent: a job finished meanwhile by another publisher is skipped.
    """
    finished: list[str] = []
    with session_scope() as session:
        shown = SqlCatalog(session).iceberg_seq_of(table_id)
        rows, _ = SqlCatalog(session).jobs_page(
            status=JobStatus.COMMITTING, table_id=table_id, limit=1000, offset=0
        )
        due = [r.id for r in rows if r.file_seq is not None and r.file_seq <= shown]
    for job_id in due:
        if finish_commit(job_id):
            finished.append(job_id)
    return finished


def finish_commit(job_id: str) -> bool:
    """COMMITTING -> SUCCEEDED, in a transaction of its own, once the job's Iceberg
    snapshot is published; True when this call moved it (False: it was SUCCEEDED
    already, or another publisher moved it first).

    Raises
    ------
    Conflict
        When the job is neither COMMITTING nor SUCCEEDED (it was never committed).
    CommitConflict
        When the job's row kept changing underneath (retried by Commit's caller).
    """
    for _attempt in range(FINISH_ATTEMPTS):
        with session_scope() as session:
            job = get_job(session, job_id)
            if job.status == JobStatus.SUCCEEDED:
                return False
            if job.status != JobStatus.COMMITTING:
                raise Conflict(f"job {job_id} is {job.status}; only a committed job can finish")
            if SqlCatalog(session).set_job_status(
                job, expect=(JobStatus.COMMITTING,), to=JobStatus.SUCCEEDED,
                finished_at=utcnow(),
            ):
                return True
        # another change of the row (a verification marking the job, say): read again
    raise CommitConflict(f"job {job_id} kept changing; it is still COMMITTING")


def publish_job(job_id: str, *, store: ObjectSweeper | None) -> IngestionJob:
    """Commit a job (:func:`commit_job`, in its own transaction: the job is COMMITTING),
    publish it as one Iceberg snapshot (:func:`publish_iceberg`), mark it SUCCEEDED
    (:func:`finish_commit`), then sweep what attempts that crashed after uploading left
    behind (only when some batch needed a retry).

    So a job reads SUCCEEDED only once every reader, Iceberg's too, sees its rows. A
    re-run after any crash commits nothing twice (a COMMITTING or SUCCEEDED job is left
    as it is), publishes the job's snapshot if the crashed run had not (the snapshot's
    ``datalake.file-seq`` and ``datalake.job-id`` keep it from being appended twice) and
    finishes the job.

    Raises
    ------
    As :func:`commit_job`; TransientError when the Iceberg publish failed (retry; the
    job stays COMMITTING); a failed sweep is only logged (the job is committed).
    """
    with session_scope() as session:
        job = commit_job(session, job_id)
        retried = SqlCatalog(session).has_retried_batch(job_id)
    _between_commits(job)
    if job.status == JobStatus.COMMITTING:
        # One try: Commit's one retry policy is the state machine's (TransientError).
        publish_iceberg(job.table_id, attempts=1)
        finish_commit(job_id)
        with session_scope() as session:
            job = get_job(session, job_id)
    if store is None:
        return job
    try:
        if not retried:  # nothing to sweep but the batch list
            store.delete(get_settings().lake_bucket, [job_plan_key(job_id)])
        else:  # the sweep takes the batch list too
            with session_scope() as session:
                swept = sweep_job_objects(session, get_job(session, job_id), store)
            log.info("swept %d object(s) after the commit of job %s", swept, job_id)
    except Exception:
        log.warning("clean-up after the commit of job %s failed", job_id, exc_info=True)
    return job


def s3_event_key(bucket: str, key: str, etag: str | None, sequencer: str | None) -> str:
    """Idempotency key of an S3 object-created event: the same upload starts one job."""
    raw = f"{bucket}/{key}@{etag or ''}#{sequencer or ''}"
    return "s3:" + hashlib.sha256(raw.encode()).hexdigest()


def job_for_object(
    session: Session,
    *,
    source: DataSource,
    bucket: str,
    key: str,
    etag: str | None,
    sequencer: str | None,
    settings: Settings | None = None,
) -> tuple[IngestionJob, bool]:
    """Create (once) the job for an uploaded object; returns (job, created)."""
    catalog: Catalog = SqlCatalog(session)
    idem = s3_event_key(bucket, key, etag, sequencer) + ":" + source.id
    existing = catalog.job_by_idempotency_key(idem)
    if existing is not None:
        return existing, False
    try:
        with catalog.savepoint():
            job = create_job(
                session,
                table_id=source.table_id,
                sources=[f"s3://{bucket}/{key}"],
                format=source.format,
                options=source.options,
                source_id=source.id,
                idempotency_key=idem,
                source_etags={f"s3://{bucket}/{key}": etag.strip('"')} if etag else None,
                actor=f"source:{source.name}",
                settings=settings,
            )
    except Conflict:
        found = catalog.job_by_idempotency_key(idem)
        assert found is not None
        return found, False
    return job, True
