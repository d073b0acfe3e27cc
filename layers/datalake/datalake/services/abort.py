"""The workflow's Catch: a job whose workflow gave up is marked FAILED and cleaned up."""

from __future__ import annotations

import logging
from typing import Any

from datalake.catalog.db import session_scope
from datalake.domain.vocabulary import JobStatus
from datalake.ports import ObjectSweeper
from datalake.services.jobs import abort_job, get_job, publish_iceberg

log = logging.getLogger(__name__)

__all__ = ["abort_workflow"]


def abort_workflow(job_id: str, *, error: str, store: ObjectSweeper) -> dict[str, Any]:
    """Mark the job FAILED (a cancelled one stays CANCELLED) and delete what it wrote;
    a committed (COMMITTING) job is finished instead: its Iceberg snapshot published.

    Parameters
    ----------
    job_id:
        The job whose workflow failed.
    error:
        What failed, recorded on the job.
    store:
        Where the job's objects are (data and quarantine), to delete them.

    Returns
    -------
    dict
        ``{"job_id", "status", "error"}`` of the job afterwards.
    """
    with session_scope() as session:
        job = abort_job(session, job_id, error=error, store=store)
        out = {"job_id": job.id, "status": job.status, "error": job.error}
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
