"""What the functions tell operators: the embedded metrics (EMF) one batch and one job
emit, and the correlation id on the JSON log lines of Plan, the worker and Commit.

The handlers run on moto and a real catalog; their stdout is captured and parsed as the
CloudWatch agent would: one JSON document per line, EMF ones carrying ``_aws``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from datalake.catalog.db import session_scope
from datalake.services import jobs, tables
from tests.fakes import FakeCallbacks, LambdaContext
from tests.functional.test_handlers import LANDING, aws, batch_list, event, load_handler

__all__ = ["aws"]
CID = "corr-observability-1"
DATA = (
    b"id,time_hour,carrier\n"
    b"1,2013-01-01 05:00:00,UA\n"
    b"x,2013-01-01 06:00:00,AA\n"  # not a long: rejected
    b"3,2013-01-02 06:00:00,B6\n"
)


class RecordingOrchestrator:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        self.payloads.append(payload)
        return f"arn:aws:states:us-east-1:000000000000:execution:ingest:{job_id}"

    def stop(self, execution_id: str, *, reason: str) -> None:
        pass


def documents(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def emf(docs: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [
        d for d in docs
        if "_aws" in d
        and any(m["Name"] == metric for cw in d["_aws"]["CloudWatchMetrics"] for m in cw["Metrics"])
    ]


@pytest.fixture
def job_id(aws: dict[str, Any]) -> str:
    aws["s3"].put_object(Bucket=LANDING, Key="obs/a.csv", Body=DATA)
    with session_scope() as session:
        table = tables.create_table(
            session, name="observed", namespace="ops",
            schema={"fields": [{"name": "id", "type": "long", "nullable": False},
                               {"name": "time_hour", "type": "timestamp"},
                               {"name": "carrier", "type": "string"}]},
            partitioning=[{"column": "time_hour", "transform": "day"}],
            max_rejected_ratio=0.5,
        )
        job = jobs.create_job(session, table_id=table.id, sources=[f"s3://{LANDING}/obs/a.csv"])
        orchestrator = RecordingOrchestrator()
        jobs.start_job(session, job.id, orchestrator=orchestrator, correlation_id=CID)
        # The correlation id goes into the execution's input, for the state machine.
        assert orchestrator.payloads[0]["correlation_id"] == CID
        return str(job.id)


def run_job(aws: dict[str, Any], job_id: str) -> None:
    ctx = LambdaContext()
    plan = load_handler("plan").lambda_handler(
        {"job_id": job_id, "correlation_id": CID}, ctx)
    worker = load_handler("ingest_batch")
    worker.callbacks = FakeCallbacks()
    message = event("ingest_batch_sqs.json", REPLACE_JOB_ID=job_id,
                    REPLACE_BATCH_ID=batch_list(aws, plan)[0]["batch_id"],
                    REPLACE_TASK_TOKEN="token-1", **{"sample-correlation-id": CID})
    assert worker.lambda_handler(message, ctx) == {"batchItemFailures": []}
    out = load_handler("commit").lambda_handler({"job_id": job_id, "correlation_id": CID}, ctx)
    assert out["status"] == "SUCCEEDED"


def flat(doc: dict[str, Any]) -> dict[str, Any]:
    """The document's metric values as plain numbers (EMF writes them as lists)."""
    return {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in doc.items()}


def test_a_batch_emits_its_embedded_metrics(
    aws: dict[str, Any], job_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    run_job(aws, job_id)
    docs = documents(capsys.readouterr().out)
    (raw,) = emf(docs, "BatchRecordsRead")
    spec, batch = raw["_aws"]["CloudWatchMetrics"][0], flat(raw)
    assert spec["Namespace"] == "Datalake"
    assert sorted(spec["Dimensions"][0]) == ["service", "table"]
    assert batch["table"] == "ops.observed" and batch["service"] == "datalake"
    units = {m["Name"]: m["Unit"] for m in spec["Metrics"]}
    assert units["BatchDuration"] == "Milliseconds" and units["BatchBytesWritten"] == "Bytes"
    assert (batch["BatchRecordsRead"], batch["BatchRecordsWritten"],
            batch["BatchRecordsRejected"]) == (3, 2, 1)
    assert batch["BatchFilesWritten"] == 2  # two days
    # Bytes fetched from S3 (a small CSV is read twice: its header, then its body).
    assert batch["BatchBytesWritten"] > 0 and batch["BatchBytesRead"] >= len(DATA)
    assert batch["BatchDuration"] > 0 and batch["BatchRetries"] == 0
    assert (batch["BatchesSucceeded"], batch["BatchesFailed"]) == (1, 0)
    assert batch["job_id"] == job_id and batch["correlation_id"] == CID and batch["batch_id"]

    # Commit: the job's figures per table, then JobsFailed on the service alone.
    (job,) = map(flat, emf(docs, "JobRecordsRead"))
    assert (job["JobRecordsRead"], job["JobRecordsWritten"], job["JobRecordsRejected"]) == (
        3, 2, 1)
    assert job["JobRejectedRatio"] == pytest.approx(100 / 3, abs=0.01)
    assert job["JobRejectedRatioThreshold"] == 50 and job["JobRejectedRatioBreached"] == 0
    assert job["JobsSucceeded"] == 1 and job["JobsFailed"] == 0 and job["JobRetries"] == 0
    service_only = [d for d in emf(docs, "JobsFailed")
                    if d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]]
    assert len(service_only) == 1 and flat(service_only[0])["JobsFailed"] == 0


def test_plan_worker_and_commit_log_the_jobs_correlation_id(
    aws: dict[str, Any], job_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    run_job(aws, job_id)
    logs = [d for d in documents(capsys.readouterr().out) if "_aws" not in d and "message" in d]
    by_message = {d["message"]: d for d in logs}
    for message, function in (("planned", "plan"), ("batch done", "ingest_batch"),
                              ("committed", "commit")):
        line = by_message[message]
        assert line["correlation_id"] == CID and line["job_id"] == job_id, line
        assert line["function"] == function and line["service"] == "datalake"
    assert by_message["batch done"]["batch_id"]


def test_a_job_over_its_tables_rejected_ratio_emits_the_breach_the_alarm_reads(
    aws: dict[str, Any], job_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """1 of 3 records rejected: under a 0.5 threshold no breach (above); under 0.2 the
    job's EMF says JobRejectedRatioBreached = 1, the metric RejectedRatioAlarm reads."""
    from datalake.aws.observability import emit_job_metrics

    run_job(aws, job_id)
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        tables.update_table(session, job.table_id, {"max_rejected_ratio": 0.2})
    capsys.readouterr()
    figures = emit_job_metrics(job_id, correlation_id=CID)
    assert figures is not None
    (doc,) = map(flat, emf(documents(capsys.readouterr().out), "JobRejectedRatioBreached"))
    assert doc["JobRejectedRatioThreshold"] == pytest.approx(20)
    assert doc["JobRejectedRatioBreached"] == 1 and doc["job_id"] == job_id
