"""Retry and rebuild: a new job over a failed, cancelled or corrupted job's sources.

``retry_job`` creates the new job (PENDING, same table, sources, format, options,
retries and timeout) with ``retry_of`` naming the old one. A corrupted job still has
committed files (the ones verification found good): when the retry commits,
:func:`retire_superseded` (called by ``commit_job``, inside its transaction) retires
them, so the table holds the rebuilt job's rows once and never the old ones beside them.

Retries chain: retrying a failed retry rebuilds the same data, so at commit the chain
is followed up to the last job that succeeded, whose files are the ones superseded.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from datalake.catalog.models import IngestionJob
from datalake.catalog.sql_catalog import SqlCatalog
from datalake.domain.vocabulary import FileStatus, JobStatus
from datalake.errors import CommitConflict, Conflict
from datalake.services.jobs import create_job, get_job
from datalake.services.verify import retire_files

#: How many retries of retries are followed at commit (a guard against a cycle).
MAX_CHAIN = 100


def is_retryable(job: IngestionJob) -> bool:
    """Whether a job may be retried: FAILED, CANCELLED, or SUCCEEDED but corrupted."""
    return job.status in (JobStatus.FAILED, JobStatus.CANCELLED) or (
        job.status == JobStatus.SUCCEEDED and job.corrupted_at is not None
    )


def retry_job(session: Session, job_id: str, *, actor: str = "system") -> IngestionJob:
    """Create a PENDING job that redoes ``job_id`` (it is not started).

    Raises
    ------
    NotFound
        When the job, or its table, does not exist (or the table is deleted).
    Conflict
        When the job is PENDING, RUNNING or SUCCEEDED and not corrupted; when it has a
        retry that is pending, running or succeeded already; or when a corrupted job's
        rows are no longer all in its own files (compaction merged some of them with
        other jobs' rows), so a rebuild would duplicate them.
    CommitConflict
        When another retry of the same job is being created at the same moment.
    """
    old = get_job(session, job_id)
    if not is_retryable(old):
        state = (
            "SUCCEEDED and not corrupted" if old.status == JobStatus.SUCCEEDED else old.status
        )
        raise Conflict(
            f"job {job_id} is {state}; only a FAILED, CANCELLED or corrupted job can be retried"
        )
    catalog = SqlCatalog(session)
    live = catalog.live_retry(old.id)
    if live is not None:
        raise Conflict(f"job {job_id} has been retried already as job {live}; retry that one")
    if old.status == JobStatus.SUCCEEDED:
        check_rebuildable(session, old)
    # Claim the old job under its version: of two concurrent retries, one loses here.
    if not catalog.compare_and_set(old):
        raise CommitConflict(f"job {job_id} changed concurrently; retry the request")
    new = create_job(
        session,
        table_id=old.table_id,
        sources=list(old.sources),
        format=old.format,
        options=dict(old.options or {}),
        max_retries=old.max_retries,
        timeout_seconds=old.timeout_seconds,
        source_id=old.source_id,
        actor=actor,
    )
    new.retry_of = old.id
    catalog.flush()
    return new


def check_rebuildable(session: Session, job: IngestionJob) -> None:
    """Refuse to rebuild a succeeded job whose rows are not all in its own files.

    Its COMMITTED and CORRUPT files must hold exactly the rows it wrote; if compaction
    merged some into shared files, retiring its files would leave those rows behind.

    Raises
    ------
    Conflict
        When the rows in the job's own files differ from its ``records_written``.
    """
    held = SqlCatalog(session).job_rows_held(job.id)
    if held != job.records_written:
        raise Conflict(
            f"job {job.id} wrote {job.records_written} rows but its own files hold {held} "
            "(compaction merged some into shared files); a rebuild would duplicate rows"
        )


def superseded_job(session: Session, job: IngestionJob) -> IngestionJob | None:
    """The job whose data a retry replaces: up its ``retry_of`` chain, the first that
    succeeded (None when none did: a failed or cancelled job committed nothing)."""
    seen = {job.id}
    current = job
    while current.retry_of is not None and len(seen) <= MAX_CHAIN:
        parent = SqlCatalog(session).get(IngestionJob, current.retry_of)
        if parent is None or parent.id in seen:
            return None
        if parent.status == JobStatus.SUCCEEDED:
            return parent
        seen.add(parent.id)
        current = parent
    return None


def retire_superseded(
    session: Session, job: IngestionJob, *, now: datetime, seq: int | None = None
) -> int:
    """At the commit of a retry: retire the files still committed by the job it rebuilds.

    Runs inside ``commit_job``'s transaction, so the old rows leave and the new ones
    arrive in one step for every reader. Returns how many files were retired.

    Raises
    ------
    Conflict
        When the superseded job's rows are no longer all in its own files.
    CommitConflict
        When a partition changed concurrently (the commit is retried).
    """
    old = superseded_job(session, job)
    if old is None:
        return 0
    check_rebuildable(session, old)
    files = SqlCatalog(session).job_files(old.id, status=FileStatus.COMMITTED)
    return len(retire_files(session, files, to=FileStatus.REPLACED, now=now, seq=seq).files)
