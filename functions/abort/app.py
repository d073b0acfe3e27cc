"""Catch state: mark a job FAILED and delete every object it wrote."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from datalake.aws.s3 import S3ObjectStore
from datalake.catalog.db import session_scope
from datalake.catalog.models import IngestionJob
from datalake.config import get_settings
from datalake.services.jobs import abort_job
from datalake.services.tables import get_table
from datalake.services.worker import table_prefix

logger = Logger()


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


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    store = S3ObjectStore()
    bucket = get_settings().lake_bucket

    with session_scope() as session:

        def delete_orphans(job: IngestionJob) -> None:
            table = get_table(session, job.table_id, include_deleted=True)
            marker = f"part-{job.id}-"
            keys = [
                o.key
                for o in store.list(bucket, table_prefix(table.namespace, table.name) + "/")
                if marker in o.key
            ]
            # A job that did not succeed has no committed file: every key it wrote goes.
            store.delete(bucket, keys)

        job = abort_job(
            session,
            event["job_id"],
            error=_error_text(event),
            deleter=store,
            orphan_lister=delete_orphans,
        )
        out = {"job_id": job.id, "status": job.status, "error": job.error}
    logger.info("aborted", extra=out)
    return out
