"""Commit state: publish a job's files in one catalog transaction.

Conflicts and transient database faults are raised as they are: the state machine
retries them (``CommitConflict``, ``TransientError``) with backoff and jitter.
"""

from __future__ import annotations

from typing import Any

from datalake.aws.events import JobEvent
from datalake.aws.observability import emit_job_metrics, get_logger, instrument
from datalake.aws.s3 import S3ObjectStore
from datalake.services.jobs import publish_job

logger = get_logger()
store = S3ObjectStore()


@instrument("commit")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = JobEvent.model_validate(event)
    job = publish_job(request.job_id, store=store)
    out = {
        "job_id": job.id,
        "table_id": job.table_id,
        "batch_count": job.batches_total,
        "status": job.status,
        "records_written": job.records_written,
        "records_rejected": job.records_rejected,
        "files": job.files_written,
    }
    logger.info("committed", extra=out)
    emit_job_metrics(job.id, correlation_id=request.correlation_id)
    return out
