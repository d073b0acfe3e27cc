"""Catch state: mark a job FAILED and delete every object it wrote (data and quarantine)."""

from __future__ import annotations

import json
from typing import Any

from datalake.aws.observability import emit_job_metrics, get_logger, instrument
from datalake.aws.s3 import S3ObjectStore
from datalake.catalog.db import session_scope
from datalake.services.jobs import abort_job, publish_iceberg

logger = get_logger()


def _error_text(event: dict[str, Any]) -> str:
    err = event.get("error") or {}
    if isinstance(err, dict):
        cause = err.get("Cause") or ""
        try:
            parsed = json.loads(cause)
            cause = parsed.get("errorMessage") or cause
        except (ValueError, AttributeError):
            pass
        return f"{err.get('Error', 'Error')}: {cause}".strip()
    return str(err)


@instrument("abort")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with session_scope() as session:
        job = abort_job(session, event["job_id"], error=_error_text(event), store=S3ObjectStore())
        out = {"job_id": job.id, "status": job.status, "error": job.error}
    if job.status == "SUCCEEDED":
        # Commit committed and then failed for good (its Iceberg publish): publish now,
        # best effort (the next change of the table or the optimize schedule would).
        try:
            publish_iceberg(job.table_id)
        except Exception:
            logger.warning("Iceberg publish after a failed Commit failed", extra=out)
    logger.info("aborted", extra=out)
    if out["status"] == "FAILED":  # a cancelled job is not a failure to alarm on
        emit_job_metrics(job.id, correlation_id=event.get("correlation_id"))
    return out
