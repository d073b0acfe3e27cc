"""Plan state: expand a job's sources into batches, settle its schema, write the batch list."""

from __future__ import annotations

from typing import Any

from datalake.aws.events import JobEvent
from datalake.aws.observability import get_logger, instrument
from datalake.aws.s3 import S3ObjectStore
from datalake.services.planning import plan_job

logger = get_logger()
store = S3ObjectStore()


@instrument("plan")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = JobEvent.model_validate(event)
    result = plan_job(request.job_id, store=store)
    logger.info("planned", extra={"job_id": request.job_id, "batches": result["batch_count"]})
    # The batch list is in S3 (items_bucket/items_key) for the Map: keep the state small.
    return {k: v for k, v in result.items() if k != "batches"}
