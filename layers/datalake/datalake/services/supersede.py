"""What a retry's commit supersedes: the files still committed by the job it rebuilds.

Retries chain: retrying a failed retry rebuilds the same data, so at commit the chain
is followed up to the last job that succeeded, whose files are the ones superseded.
``commit_job`` (services/jobs.py) calls :func:`retire_superseded` inside its
transaction; this module does not import the jobs service, so there is no cycle.
"""

from __future__ import annotations

from datetime import datetime

from datalake.catalog.models import IngestionJob
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.domain.vocabulary import FileStatus, JobStatus
from datalake.errors import Conflict
from datalake.services.verify import retire_files

__all__ = ["MAX_CHAIN", "check_rebuildable", "retire_superseded", "superseded_job"]

#: How many retries of retries are followed at commit (a guard against a cycle).
MAX_CHAIN = 100


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
