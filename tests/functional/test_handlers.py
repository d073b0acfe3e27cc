"""Every Lambda handler on its sample event from events/, against moto and a real catalog."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from datalake.aws import clients
from datalake.catalog.db import session_scope
from datalake.config import get_settings
from datalake.engine.splits import batch_from_json
from datalake.services import jobs, sources, tables
from datalake.tokens import make_token
from tests.fakes import FakeCallbacks, FakeOrchestrator, LambdaContext

ROOT = Path(__file__).resolve().parents[2]
CTX = LambdaContext()
EVENTS = ROOT / "events"
LAKE = "lake-bucket"
LANDING = "datalake-landing-000000000000-us-east-1"  # the bucket named in the sample event


def load_handler(name: str) -> ModuleType:
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"handler_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(name: str, **replace: str) -> dict[str, Any]:
    text = (EVENTS / name).read_text()
    for key, value in replace.items():
        text = text.replace(key, value)
    return dict(json.loads(text))


def batch_list(aws: dict[str, Any], plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch list Plan wrote for the Map to read (its output carries only where)."""
    assert "batches" not in plan, "the list stays out of the state payload"
    body = aws["s3"].get_object(Bucket=plan["items_bucket"], Key=plan["items_key"])["Body"]
    return list(json.loads(body.read()))


@pytest.fixture
def aws(use_catalog: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("DATALAKE_LAKE_BUCKET", LAKE)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    get_settings.cache_clear()
    clients.reset()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": False}}):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=LAKE)
        s3.create_bucket(Bucket=LANDING)
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        definition = (ROOT / "infra" / "ingest_job.asl.json").read_text()
        arn = sfn.create_state_machine(
            name="ingest",
            definition=definition,
            roleArn="arn:aws:iam::000000000000:role/sfn",
        )["stateMachineArn"]
        monkeypatch.setenv("DATALAKE_STATE_MACHINE_ARN", arn)
        get_settings.cache_clear()
        yield {"s3": s3, "sfn": sfn, "arn": arn}
    clients.reset()
    get_settings.cache_clear()


def test_api_handler_on_sample_events(use_catalog: str) -> None:
    api = load_handler("api")
    health = api.lambda_handler(event("api_health.json"), CTX)
    assert health["statusCode"] == 200 and json.loads(health["body"])["catalog"] == "ok"
    token = make_token("events", ["admin"])
    created = api.lambda_handler(
        event("api_create_table.json", REPLACE_WITH_TOKEN=token), LambdaContext()
    )
    assert created["statusCode"] == 201, created["body"]
    assert json.loads(created["body"])["partitioning"][0]["transform"] == "day"
    listing = api.lambda_handler(event("api_list_tables.json", REPLACE_WITH_TOKEN=token), CTX)
    assert json.loads(listing["body"])["total"] == 1
    unauth = api.lambda_handler(event("api_list_tables.json", REPLACE_WITH_TOKEN="x"), CTX)
    assert unauth["statusCode"] == 401


def test_trigger_plan_batch_commit_on_sample_events(aws: dict[str, Any]) -> None:
    key = "flights/2013/flights part 1.csv"  # the sample event's key, URL-encoded there
    etag = aws["s3"].put_object(
        Bucket=LANDING,
        Key=key,
        Body=b"id,time_hour,carrier\n1,2013-01-01 05:00:00,UA\n2,2013-01-02 06:00:00,AA\n",
    )["ETag"].strip('"')
    with session_scope() as session:
        table = tables.create_table(
            session, name="flights", partitioning=[{"column": "time_hour", "transform": "day"}]
        )
        sources.create_source(
            session, name="drop", table_id=table.id, bucket=LANDING, prefix="flights/"
        )
        table_id = table.id

    trigger = load_handler("trigger")
    # the job ingests the object its event names: give the sample event the real ETag
    sample = event("s3_object_created_sqs.json", **{"0123456789abcdef0123456789abcdef": etag})
    assert trigger.lambda_handler(sample, CTX) == {"batchItemFailures": []}
    # S3 delivers at least once: the same event again starts nothing new.
    assert trigger.lambda_handler(sample, CTX) == {"batchItemFailures": []}
    with session_scope() as session:
        found, total = jobs.list_jobs(session, table_id=table_id)
        assert total == 1 and found[0].status == "RUNNING"
        job_id = found[0].id
    executions = aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]
    assert [e["name"] for e in executions] == [job_id]

    plan = load_handler("plan").lambda_handler(event("plan.json", REPLACE_JOB_ID=job_id), CTX)
    assert plan["batch_count"] == 1

    worker = load_handler("ingest_batch")
    worker.callbacks = FakeCallbacks()
    message = event(
        "ingest_batch_sqs.json",
        REPLACE_JOB_ID=job_id,
        REPLACE_BATCH_ID=batch_list(aws, plan)[0]["batch_id"],
        REPLACE_TASK_TOKEN="token-1",
    )
    assert worker.lambda_handler(message, CTX) == {"batchItemFailures": []}
    assert worker.callbacks.ok and worker.callbacks.ok[0][1]["records_written"] == 2
    # A redelivered message answers the new token with the same result, writing nothing.
    assert worker.lambda_handler(message, CTX) == {"batchItemFailures": []}
    assert len(worker.callbacks.ok) == 2

    out = load_handler("commit").lambda_handler(
        event("commit.json", REPLACE_JOB_ID=job_id), LambdaContext()
    )
    assert out["status"] == "SUCCEEDED" and out["records_written"] == 2
    with session_scope() as session:
        files, total = tables.committed_files(session, table_id)
        assert total == 2 and {f.partition_path for f in files} == {
            "time_hour_day=2013-01-01",
            "time_hour_day=2013-01-02",
        }


@pytest.mark.parametrize("legacy", [False, True], ids=["disabled", "deleted-before-disabling"])
def test_uploads_for_a_deleted_table_start_nothing_and_do_not_fail(
    aws: dict[str, Any], legacy: bool
) -> None:
    key = "flights/2013/flights part 1.csv"
    aws["s3"].put_object(Bucket=LANDING, Key=key, Body=b"id,time_hour\n1,2013-01-01 05:00:00\n")
    with session_scope() as session:
        table = tables.create_table(session, name="flights")
        source = sources.create_source(
            session, name="drop", table_id=table.id, bucket=LANDING, prefix="flights/"
        )
        tables.delete_table(session, table.id)
        assert source.enabled is False
        if legacy:  # as a table deleted before deletion disabled its sources left it
            source.enabled = True
        table_id = table.id

    trigger = load_handler("trigger")
    # A failed record would be redelivered until the dead-letter queue takes it.
    assert trigger.lambda_handler(event("s3_object_created_sqs.json"), CTX) == {
        "batchItemFailures": []
    }
    with session_scope() as session:
        assert jobs.list_jobs(session, table_id=table_id)[1] == 0
    assert aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"] == []


def test_a_deterministic_batch_failure_fails_at_once_and_abort_cleans_up(
    aws: dict[str, Any],
) -> None:
    # Under freeze, a file with a column the table lacks fails its batch (not the plan).
    aws["s3"].put_object(Bucket=LANDING, Key="bad/data.csv", Body=b"a,b\n1,2\n3,4\n")
    with session_scope() as session:
        table = tables.create_table(
            session,
            name="t",
            schema={"fields": [{"name": "a", "type": "long"}]},
            schema_policy="freeze",
        )
        job = jobs.create_job(
            session, table_id=table.id, sources=[f"s3://{LANDING}/bad/data.csv"], max_retries=1
        )
        job_id = job.id

    with session_scope() as session:
        jobs.start_job(session, job_id, orchestrator=FakeOrchestrator())
    plan = load_handler("plan").lambda_handler({"job_id": job_id}, CTX)
    worker = load_handler("ingest_batch")
    worker.callbacks = FakeCallbacks()
    message = event(
        "ingest_batch_sqs.json",
        REPLACE_JOB_ID=job_id,
        REPLACE_BATCH_ID=batch_list(aws, plan)[0]["batch_id"],
        REPLACE_TASK_TOKEN="t",
    )
    assert worker.lambda_handler(message, CTX) == {"batchItemFailures": []}
    # SchemaMismatch would recur on every attempt: no retry, although max_retries=1.
    assert [f[1] for f in worker.callbacks.failed] == ["Datalake.BatchFailed"]
    cause = worker.callbacks.failed[-1][2]
    assert cause.startswith("SchemaMismatch: ")
    # What the Distributed Map's Catch hands Abort: not the item's own error.
    error = {"Error": "States.ExceedToleratedFailureThreshold", "Cause": "threshold exceeded"}
    abort = load_handler("abort")
    payload = {"job_id": job_id, "error": error}
    out = abort.lambda_handler(payload, CTX)
    assert out["status"] == "FAILED" and out["error"] == cause
    assert abort.lambda_handler(payload, CTX)["status"] == "FAILED"  # re-run is harmless
    assert aws["s3"].list_objects_v2(Bucket=LAKE).get("KeyCount", 0) == 0


def test_the_docs_page_and_openapi_servers_carry_the_stage_prefix(use_catalog: str) -> None:
    api = load_handler("api")
    docs = event("api_health.json")
    docs["path"] = docs["resource"] = "/api/v1/docs"
    docs["requestContext"].update(stage="Prod", path="/Prod/api/v1/docs")
    page = api.lambda_handler(docs, CTX)
    assert page["statusCode"] == 200
    assert "/Prod/api/v1/openapi.json" in page["body"]
    spec = event("api_health.json")
    spec["path"] = spec["resource"] = "/api/v1/openapi.json"
    spec["requestContext"].update(stage="Prod", path="/Prod/api/v1/openapi.json")
    doc = json.loads(api.lambda_handler(spec, CTX)["body"])
    assert doc["servers"][0]["url"] == "/Prod"
    # Behind a custom domain (no stage in the public path) nothing is prefixed.
    spec["requestContext"].update(path="/api/v1/openapi.json")
    assert "servers" not in json.loads(api.lambda_handler(spec, CTX)["body"])


def upload_event(*objects: tuple[str, int]) -> dict[str, Any]:
    """An SQS message of S3 ``ObjectCreated`` records, one per (key, size)."""
    records = [
        {
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": LANDING},
                "object": {"key": quote_plus(key, safe="/"), "size": size,
                           "eTag": f"etag-{i}", "sequencer": f"{i:018d}"},
            },
        }
        for i, (key, size) in enumerate(objects)
    ]
    sample = event("s3_object_created_sqs.json")
    sample["Records"][0]["body"] = json.dumps({"Records": records})
    return sample


def test_the_trigger_skips_markers_folders_empty_objects_and_ignored_uploads(
    aws: dict[str, Any],
) -> None:
    with session_scope() as session:
        table = tables.create_table(session, name="flights")
        sources.create_source(session, name="drop", table_id=table.id, bucket=LANDING,
                              prefix="flights/", ignore=["*.tmp", "staging/*"])
        table_id = table.id
    skipped = [
        ("flights/2013/_SUCCESS", 0),
        ("flights/2013/_committed_123", 120),
        ("flights/2013/_started_123", 0),
        ("flights/2013/.part-00000.csv.crc", 12),
        ("flights/2013/subdir/", 0),
        ("flights/2013/empty.csv", 0),
        ("flights/2013/part-00000.csv.tmp", 300),  # the source's own patterns
        ("flights/staging/part-00000.csv", 300),
    ]
    trigger = load_handler("trigger")
    assert trigger.lambda_handler(upload_event(*skipped), CTX) == {"batchItemFailures": []}
    with session_scope() as session:
        assert jobs.list_jobs(session, table_id=table_id)[1] == 0
    assert aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"] == []

    # A data file beside them still starts its job (and a pattern is no substring match).
    assert trigger.lambda_handler(
        upload_event(("flights/2013/part-00000.csv", 300), ("flights/2013/tmp.csv", 10)), CTX
    ) == {"batchItemFailures": []}
    with session_scope() as session:
        found, total = jobs.list_jobs(session, table_id=table_id)
    assert total == 2 and sorted(j.sources[0] for j in found) == [
        f"s3://{LANDING}/flights/2013/part-00000.csv", f"s3://{LANDING}/flights/2013/tmp.csv"]


def test_a_prefix_ingest_skips_the_markers_the_trigger_skips(aws: dict[str, Any]) -> None:
    # A Spark/Databricks output folder: data beside markers no format can read.
    for key, body in [("out/part-00000.csv", b"a\n1\n2\n"), ("out/_SUCCESS", b""),
                      ("out/_committed_42", b'{"added": ["part-00000.csv"]}'),
                      ("out/.part-00000.csv.crc", b"crc\x00\x01"), ("out/sub/", b"")]:
        aws["s3"].put_object(Bucket=LANDING, Key=key, Body=body)
    with session_scope() as session:
        table = tables.create_table(session, name="t")
        job = jobs.create_job(session, table_id=table.id, sources=[f"s3://{LANDING}/out/"])
        job_id = job.id
    with session_scope() as session:
        jobs.start_job(session, job_id, orchestrator=FakeOrchestrator())
    plan = load_handler("plan").lambda_handler({"job_id": job_id}, CTX)
    assert plan["batch_count"] == 1
    with session_scope() as session:
        (batch,) = jobs.list_batches(session, job_id)[0]
    assert [s.key for s in batch_from_json(batch.split)] == ["out/part-00000.csv"]
