"""The functions' events parsed into models (datalake.aws.events), not indexed as dicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from datalake.aws.events import AbortEvent, JobEvent, OptimizeEvent, S3Notification

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_an_abort_event_records_the_lambda_error_message_of_its_cause() -> None:
    cause = json.dumps({"errorMessage": "table t is gone", "errorType": "NotFound"})
    event = AbortEvent.model_validate(
        {"job_id": "j", "error": {"Error": "NotFound", "Cause": cause}}
    )
    assert event.error_text == "NotFound: table t is gone"


@pytest.mark.parametrize(
    ("error", "text"),
    [
        ({"Error": "Datalake.BatchFailed", "Cause": "CorruptInput: not a CSV"},
         "Datalake.BatchFailed: CorruptInput: not a CSV"),
        ({"Error": "States.Timeout", "Cause": "[1, 2]"}, "States.Timeout: [1, 2]"),
        ({"Error": "X", "Cause": {"nested": True}}, 'X: {"nested": true}'),
        (None, "Error:"),
        ("plain words", "plain words"),
    ],
)
def test_an_abort_event_says_what_failed_whatever_the_error_looks_like(
    error: object, text: str
) -> None:
    assert AbortEvent.model_validate({"job_id": "j", "error": error}).error_text == text


def test_the_sample_abort_event_parses() -> None:
    event = AbortEvent.model_validate_json((EVENTS / "abort.json").read_text())
    assert event.correlation_id == "sample-correlation-id"
    assert event.error_text == "Datalake.BatchFailed: CorruptInput: not a CSV"


def test_a_job_event_without_a_job_id_is_refused() -> None:
    with pytest.raises(ValidationError):
        JobEvent.model_validate({"correlation_id": "c"})


def test_the_sample_s3_notification_names_its_upload_with_the_key_decoded() -> None:
    sqs = json.loads((EVENTS / "s3_object_created_sqs.json").read_text())
    (upload,) = S3Notification.model_validate_json(sqs["Records"][0]["body"]).uploads()
    assert upload.bucket == "datalake-landing-000000000000-us-east-1"
    assert upload.key == "flights/2013/flights part 1.csv"
    assert upload.etag == "0123456789abcdef0123456789abcdef"
    assert upload.sequencer == "0A1B2C3D4E5F678901"


def test_test_events_and_removals_name_no_upload() -> None:
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}
    assert S3Notification.model_validate(test_event).uploads() == []
    removed = {"Records": [{"eventName": "ObjectRemoved:Delete",
                            "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}
    assert S3Notification.model_validate(removed).uploads() == []


def test_a_malformed_notification_is_an_error_not_a_skip() -> None:
    with pytest.raises(ValidationError):
        S3Notification.model_validate_json('{"Records": [{"eventName": "ObjectCreated:Put",'
                                           ' "s3": {"bucket": {}}}]}')


def test_an_optimize_event_without_a_table_is_the_scheduled_run() -> None:
    scheduled = OptimizeEvent.model_validate_json((EVENTS / "optimize_schedule.json").read_text())
    assert scheduled.table_id is None and scheduled.actor == "system:optimize"
    asked = OptimizeEvent.model_validate_json((EVENTS / "optimize.json").read_text())
    assert asked.actor == "sam-local" and asked.target_file_size_mb == 128
    assert OptimizeEvent.model_validate({"table_id": "", "partition_id": ""}).table_id is None
