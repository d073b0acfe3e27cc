"""Batch worker: one SQS message = one attempt at a batch, answered through its task token."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from datalake.aws.observability import get_logger, instrument, observe_batch
from datalake.aws.s3 import S3ObjectStore
from datalake.aws.sfn import StepFunctionsCallbacks
from datalake.services.batch_messages import handle_batch_message

logger = get_logger()
processor = BatchProcessor(event_type=EventType.SQS)
callbacks = StepFunctionsCallbacks()
store = S3ObjectStore()


def record_handler(record: SQSRecord) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    # Each message is one batch: its job, batch and correlation ids on its log lines,
    # then one EMF document of its figures.
    with observe_batch(record.body, receive_count=receive_count) as observed:
        observed["fate"] = handle_batch_message(
            record.body, receive_count=receive_count, store=store, callbacks=callbacks
        )


@instrument("ingest_batch", correlation_id_path=None)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
