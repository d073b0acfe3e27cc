"""An object uploaded under a data source's prefix starts that source's job, once."""

from __future__ import annotations

from datalake.catalog.db import session_scope
from datalake.domain.source_objects import marker_reason
from datalake.domain.vocabulary import JobStatus
from datalake.ports import Orchestrator
from datalake.services.jobs import job_for_object, start_job
from datalake.services.sources import match_sources

__all__ = ["start_jobs_for_upload"]


def start_jobs_for_upload(
    bucket: str,
    key: str,
    *,
    etag: str | None,
    sequencer: str | None,
    orchestrator: Orchestrator,
    correlation_id: str | None = None,
    size: int | None = None,
) -> list[str]:
    """Create and start a job per source whose prefix holds ``s3://bucket/key``.

    An object that holds no records (a ``_SUCCESS`` or ``.crc`` marker, a folder key, an
    empty object: the rule a prefix ingest skips them by) starts nothing, nor does one a
    source's ignore patterns name, for that source.

    Parameters
    ----------
    bucket, key:
        The object created (the key URL-decoded).
    etag, sequencer:
        From the S3 event: the same upload's event delivered twice starts one job (the
        idempotency key), and the job reads exactly that version of the object.
    orchestrator:
        Starts each job's workflow.
    correlation_id:
        Ties the jobs' logs to the event that started them.
    size:
        The object's size from the event (``None``: unknown, not taken as empty).

    Returns
    -------
    list of str
        The ids of the jobs started now; a repeated event starts none.
    """
    started: list[str] = []
    if marker_reason(key, size) is not None:
        return started
    with session_scope() as session:
        sources = match_sources(session, bucket, key)
    for source in sources:
        # One transaction per source: one source's failure leaves the others' jobs started.
        with session_scope() as session:
            job, created = job_for_object(
                session, source=source, bucket=bucket, key=key, etag=etag, sequencer=sequencer
            )
            if job.status != JobStatus.PENDING:
                continue
            actor = f"source:{source.name}"
            start_job(session, job.id, orchestrator=orchestrator, actor=actor,
                      correlation_id=correlation_id,
                      details={"object": f"s3://{bucket}/{key}", "created": created})
            started.append(job.id)
    return started
