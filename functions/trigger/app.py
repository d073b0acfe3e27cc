"""S3 upload trigger: an object created under a data source's prefix starts a job (once)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities import batch
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from datalake.aws.events import S3Notification
from datalake.aws.observability import bind, get_logger, instrument
from datalake.aws.sfn import job_orchestrator
from datalake.config import get_settings
from datalake.domain.source_objects import marker_reason
from datalake.services.uploads import start_jobs_for_upload

logger = get_logger()
processor = batch.BatchProcessor(event_type=batch.EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    correlation_id = f"s3-event-{record.message_id}"  # ties the jobs' logs to this event
    bind(correlation_id=correlation_id)
    try:
        for up in S3Notification.model_validate_json(record.body).uploads():
            jobs = start_jobs_for_upload(
                up.bucket, up.key, etag=up.etag, sequencer=up.sequencer, size=up.size,
                orchestrator=job_orchestrator(get_settings().state_machine_arn),
                correlation_id=correlation_id)
            logger.info("object seen", extra={"key": up.key, "jobs_started": jobs,
                                              "skipped": marker_reason(up.key, up.size)})
    except Exception:  # SQS redelivers it, and past maxReceiveCount DLQs it: say why
        logger.exception("upload event failed", extra={"message_id": record.message_id,
                         "receive_count": record.attributes.approximate_receive_count})
        raise


@instrument("trigger", correlation_id_path=None)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch.process_partial_response(event=event, record_handler=record_handler,
                                          processor=processor, context=context)
