"""The workflow's Catch: a job whose workflow gave up is marked FAILED and cleaned up."""

from __future__ import annotations

import logging
from typing import Any

from datalake.catalog.db import session_scope
from datalake.domain.vocabulary import JobStatus
from datalake.ports import ObjectSweeper
from datalake.services.jobs import abort_job, get_job, publish_iceberg
from datalake.services.schemas import retire_unsettled

log = logging.getLogger(__name__)

__all__ = ["abort_workflow"]


def abort_workflow(job_id: str, *, error: str, store: ObjectSweeper) -> dict[str, Any]:
    """Mark the job FAILED (a cancelled one stays CANCELLED), delete what it wrote (a
    failed job keeps its quarantine: :func:`~datalake.services.jobs.abort_job`), and
    retire the schema version it settled at Plan unless data depends on it
    (:func:`datalake.services.schemas.retire_unsettled`); a committed (COMMITTING) job
    is finished instead: its Iceberg snapshot published.

    Parameters
    ----------
    job_id:
        The job whose workflow failed.
    error:
        What the workflow caught; recorded on the job unless a batch failed, whose own
        error (the cause, not the Map's or Commit's summary of it) is recorded instead.
    store:
        Where the job's objects are, to delete them.

    Returns
    -------
    dict
        ``{"job_id", "status", "error"}`` of the job afterwards.
    """
    with session_scope() as session:
        job = abort_job(session, job_id, error=error, store=store)
        out = {"job_id": job.id, "status": job.status, "error": job.error}
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        # The schema version Plan settled for this job describes no data now. In a
        # transaction of its own, which takes the table row's lock before any job row's,
        # as Plan does; if it fails, the table's next Plan retires the version.
        try:
            with session_scope() as session:
                retire_unsettled(session, job.table_id)
        except Exception:
            log.warning("retiring the failed job's schema version failed", extra=out,
                        exc_info=True)
    if job.status == JobStatus.COMMITTING:
        # Commit committed and then failed for good (its Iceberg publish): the job keeps
        # its files and can only finish. Publish now, which marks it SUCCEEDED; best
        # effort: else the next publish of the table (a Commit, a compaction, the
        # optimize schedule) finishes it.
        try:
            publish_iceberg(job.table_id)
        except Exception:
            log.warning("Iceberg publish after a failed Commit failed", extra=out)
        with session_scope() as session:
            out["status"] = get_job(session, job_id).status
    return out
