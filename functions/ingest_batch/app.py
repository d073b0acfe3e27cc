"""Batch worker: one SQS message = one attempt at a batch, answered through its task token."""

from __future__ import annotations

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
from datalake.services.batch_messages import handle_batch_message

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
callbacks = StepFunctionsCallbacks()


def record_handler(record: SQSRecord) -> None:
    handle_batch_message(
        record.body,
        receive_count=int(record.attributes.approximate_receive_count or 1),
        store=S3ObjectStore(),
        callbacks=callbacks,
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
