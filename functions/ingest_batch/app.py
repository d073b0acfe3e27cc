"""Batch worker: one SQS message = one batch of a job, answered through its task token."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from datalake.aws.s3 import S3ObjectStore
from datalake.aws.sfn import StepFunctionsCallbacks
from datalake.services.jobs import JobCancelled
from datalake.services.worker import retries_left, run_batch

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
callbacks = StepFunctionsCallbacks()

RETRY = "Datalake.BatchRetry"  # the state machine retries these with backoff
FAILED = "Datalake.BatchFailed"  # retries exhausted: the job fails
CANCELLED = "Datalake.JobCancelled"


def record_handler(record: SQSRecord) -> None:
    body = json.loads(record.body)
    job_id, batch_id, token = body["job_id"], body["batch_id"], body["task_token"]
    try:
        outcome = run_batch(job_id, batch_id, store=S3ObjectStore())
    except JobCancelled as e:
        callbacks.failure(token, error=CANCELLED, cause=str(e))
        return
    except Exception as e:  # the batch failed; the workflow decides what happens next
        logger.exception("batch failed", extra={"job_id": job_id, "batch_id": batch_id})
        error = RETRY if retries_left(job_id, batch_id) else FAILED
        callbacks.failure(token, error=error, cause=f"{type(e).__name__}: {e}")
        return
    logger.info("batch done", extra=outcome.to_json())
    callbacks.success(token, outcome.to_json())


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
