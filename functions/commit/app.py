"""Commit state: publish a job's files in one catalog transaction (retried on conflict)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from datalake.catalog.db import session_scope
from datalake.errors import CommitConflict
from datalake.services.jobs import commit_job

logger = Logger()
ATTEMPTS = 8


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    job_id = event["job_id"]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with session_scope() as session:
                job = commit_job(session, job_id)
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
            return out
        except CommitConflict:
            if attempt == ATTEMPTS:
                raise
            logger.warning("commit conflict, retrying", extra={"job_id": job_id})
    raise AssertionError("unreachable")
