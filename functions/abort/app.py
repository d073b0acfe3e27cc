"""Catch state: mark a job FAILED and delete every object it wrote (data and quarantine)."""

from __future__ import annotations

from typing import Any

from datalake.aws.events import AbortEvent
from datalake.aws.observability import emit_job_metrics, get_logger, instrument
from datalake.aws.s3 import S3ObjectStore
from datalake.domain.vocabulary import JobStatus
from datalake.services.abort import abort_workflow

logger = get_logger()
store = S3ObjectStore()


@instrument("abort")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = AbortEvent.model_validate(event)
    out = abort_workflow(request.job_id, error=request.error_text, store=store)
    logger.info("aborted", extra=out)
    if out["status"] == JobStatus.FAILED:  # a cancelled job is not a failure to alarm on
        emit_job_metrics(request.job_id, correlation_id=request.correlation_id)
    return out
