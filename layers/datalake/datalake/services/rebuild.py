"""Retry and rebuild: a new job over a failed, cancelled or corrupted job's sources.

``retry_job`` creates the new job (PENDING, same table, sources, format, options,
retries and timeout) with ``retry_of`` naming the old one. A corrupted job still has
committed files (the ones verification found good): when the retry commits,
:func:`datalake.services.supersede.retire_superseded` (called by ``commit_job``, inside
its transaction) retires them, so the table holds the rebuilt job's rows once and never
the old ones beside them.
"""

from __future__ import annotations

from datalake.catalog.models import IngestionJob
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.domain.vocabulary import JobStatus
from datalake.errors import CommitConflict, Conflict
from datalake.services import audit
from datalake.services.jobs import create_job, get_job
from datalake.services.supersede import check_rebuildable

__all__ = ["is_retryable", "retry_job"]


def is_retryable(job: IngestionJob) -> bool:
    """Whether a job may be retried: FAILED, CANCELLED, or SUCCEEDED but corrupted."""
    return job.status in (JobStatus.FAILED, JobStatus.CANCELLED) or (
        job.status == JobStatus.SUCCEEDED and job.corrupted_at is not None
    )


def retry_job(
    session: Session, job_id: str, *, actor: str = "system", correlation_id: str | None = None
) -> IngestionJob:
    """Create a PENDING job that redoes ``job_id`` (it is not started; audited as ``job.retry``).

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
        correlation_id=correlation_id,
    )
    new.retry_of = old.id
    catalog.flush()
    audit.record(session, actor=actor, action="job.retry", entity_type="job", entity_id=new.id,
                 details={"retry_of": job_id, "table_id": new.table_id},
                 correlation_id=correlation_id)
    return new
