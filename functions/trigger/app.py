"""S3 upload trigger: an object created under a data source's prefix starts a job (once)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from datalake.aws.observability import bind, get_logger, instrument
from datalake.aws.sfn import StepFunctionsOrchestrator
from datalake.catalog.db import session_scope
from datalake.config import get_settings
from datalake.services import audit
from datalake.services.jobs import job_for_object, start_job
from datalake.services.sources import match_sources

logger = get_logger()
processor = BatchProcessor(event_type=EventType.SQS)


def handle_object(
    bucket: str, key: str, etag: str | None, sequencer: str | None,
    correlation_id: str | None = None,
) -> list[str]:
    """Create and start a job per matching source; a repeated event starts nothing new."""
    started: list[str] = []
    orchestrator = StepFunctionsOrchestrator(get_settings().state_machine_arn or "")
    with session_scope() as session:
        sources = match_sources(session, bucket, key)
    for source in sources:
        with session_scope() as session:
            job, created = job_for_object(
                session, source=source, bucket=bucket, key=key, etag=etag, sequencer=sequencer
            )
            if job.status != "PENDING":
                continue
            start_job(session, job.id, orchestrator=orchestrator, actor=f"source:{source.name}",
                      correlation_id=correlation_id)
            audit.record(
                session,
                actor=f"source:{source.name}",
                action="job.start",
                entity_type="job",
                entity_id=job.id,
                details={"object": f"s3://{bucket}/{key}", "created": created},
            )
            started.append(job.id)
    return started


def record_handler(record: SQSRecord) -> None:
    try:
        _handle(record)
    except Exception:
        # SQS delivers it again, and past maxReceiveCount moves it to the DLQ: say why.
        logger.exception(
            "upload event failed",
            extra={"receive_count": record.attributes.approximate_receive_count,
                   "message_id": record.message_id},
        )
        raise


def _handle(record: SQSRecord) -> None:
    # The upload event's message starts its jobs: its id ties their logs together.
    correlation_id = f"s3-event-{record.message_id}"
    bind(correlation_id=correlation_id)
    body = json.loads(record.body)
    for rec in body.get("Records", []):  # s3:TestEvent has none
        if not str(rec.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = rec["s3"]
        key = unquote_plus(s3["object"]["key"])
        jobs = handle_object(
            s3["bucket"]["name"], key, s3["object"].get("eTag"), s3["object"].get("sequencer"),
            correlation_id,
        )
        logger.info("object seen", extra={"key": key, "jobs_started": jobs})


@instrument("trigger", correlation_id_path=None)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
