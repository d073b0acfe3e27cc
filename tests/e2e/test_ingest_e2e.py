"""End to end on LocalStack: API Gateway -> Mangum/FastAPI, S3 upload -> SQS -> trigger ->
Step Functions (Plan -> Map of SQS callback tasks -> Commit) -> Parquet in the lake,
with the catalog in a real Postgres database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from datalake.cli import ApiClient
from datalake.tokens import make_token

pytestmark = [pytest.mark.localstack, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
STACK = "datalake-e2e"


@dataclass
class Deployed:
    api: ApiClient
    outputs: dict[str, str]
    stack: Any

    @property
    def landing(self) -> str:
        return self.outputs["LandingBucket"]

    @property
    def lake(self) -> str:
        return self.outputs["LakeBucket"]


@pytest.fixture(scope="module")
def deployed(localstack: Any, postgres_e2e_url: str) -> Iterator[Deployed]:
    t0 = time.monotonic()
    outputs = localstack.deploy(
        ROOT / "infra" / "template.yaml",
        STACK,
        params={"DatabaseUrl": postgres_e2e_url, "WorkerConcurrency": "4"},
    )
    print(f"deployed {STACK} in {time.monotonic() - t0:.1f}s")
    api = ApiClient(outputs["ApiUrl"], make_token("e2e", ["admin"]), timeout=120)
    yield Deployed(api, outputs, localstack)


def csv_rows(n: int, bad_every: int = 0) -> bytes:
    lines = ["id,event_time,carrier,amount"]
    for i in range(n):
        amount = "oops" if bad_every and i % bad_every == 0 else f"{i * 1.5:.2f}"
        lines.append(f"{i},2024-03-{1 + i % 3:02d} {i % 24:02d}:15:00,C{i % 4},{amount}")
    return ("\n".join(lines) + "\n").encode()


def create_table(d: Deployed, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "namespace": "e2e",
        "schema": {
            "fields": [
                {"name": "id", "type": "long", "nullable": False},
                {"name": "event_time", "type": "timestamp"},
                {"name": "carrier", "type": "string"},
                {"name": "amount", "type": "double"},
            ]
        },
        "partitioning": [{"column": "event_time", "transform": "day", "name": "day"}],
        **extra,
    }
    return dict(d.api.call("POST", "/api/v1/tables/", body))


def wait_job(d: Deployed, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = d.api.call("GET", f"/api/v1/ingestion/jobs/{job_id}")
        if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return dict(job)
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def wait_first_job(d: Deployed, table_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = d.api.call("GET", f"/api/v1/ingestion/jobs?table_id={table_id}")["items"]
        if items:
            return wait_job(d, items[0]["id"])
        time.sleep(1)
    raise AssertionError("the upload started no job")


def read_lake(d: Deployed, files: list[dict[str, Any]], tmp: Path) -> Any:
    import duckdb

    s3 = d.stack.client("s3")
    for f in files:
        bucket, key = f["path"][5:].split("/", 1)
        (tmp / key).parent.mkdir(parents=True, exist_ok=True)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        import hashlib

        assert hashlib.sha256(body).hexdigest() == f["checksum"]
        (tmp / key).write_bytes(body)
    con = duckdb.connect()
    return con.execute(
        f"SELECT count(*), count(DISTINCT id), count(DISTINCT day) FROM read_parquet("
        f"'{tmp}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
    ).fetchone()


def states_entered(d: Deployed, arn: str, timeout: float = 180) -> list[str]:
    """The states an execution entered, once it has finished (Compact runs after Commit)."""
    sfn = d.stack.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"execution {arn} still running"
        time.sleep(1)
    assert sfn.describe_execution(executionArn=arn)["status"] in ("SUCCEEDED", "FAILED", "ABORTED")
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]


def test_health_through_api_gateway(deployed: Deployed) -> None:
    status, body = ApiClient(deployed.outputs["ApiUrl"], None).request("GET", "/health")
    assert status == 200 and body["catalog"] == "ok"
    status, body = ApiClient(deployed.outputs["ApiUrl"], None).request("GET", "/api/v1/tables/")
    assert status == 401 and "detail" in body


def test_upload_to_landing_ingests_exactly_once(deployed: Deployed, tmp_path: Path) -> None:
    table = create_table(deployed, "uploads")
    deployed.api.call(
        "POST",
        "/api/v1/sources",
        {
            "name": "e2e-uploads",
            "table_id": table["id"],
            "bucket": deployed.landing,
            "prefix": "incoming/uploads/",
            "options": {"split_size_mb": 0.05, "batch_size": 500},
        },
    )
    data = csv_rows(6000, bad_every=1000)
    deployed.stack.client("s3").put_object(
        Bucket=deployed.landing, Key="incoming/uploads/part 1.csv", Body=data
    )
    job = wait_first_job(deployed, table["id"])
    assert job["status"] == "SUCCEEDED", job
    assert job["records_read"] == 6000
    assert job["records_rejected"] == 6
    assert job["records_written"] == 5994
    assert job["batches_total"] > 1 and job["batches_succeeded"] == job["batches_total"]

    states = states_entered(deployed, job["execution_arn"])
    # IngestBatch runs in the Distributed Map's child executions, not in this history.
    for name in ("Plan", "Batches", "Commit", "Compact"):
        assert name in states, states
    assert "Abort" not in states
    # The Compact state merged the small files the batches left: fewer files, same rows.
    # The count before compaction is the job's own: Compact runs after the job has
    # SUCCEEDED, so a listing taken now may already be compacted.
    compacted = deployed.api.call("GET", f"/api/v1/tables/{table['id']}/files?limit=10000")
    assert sum(f["record_count"] for f in compacted["items"]) == 5994
    assert compacted["total"] < job["files_written"], (compacted["total"], job)

    files = deployed.api.call("GET", f"/api/v1/tables/{table['id']}/files?limit=10000")
    assert files["total"] == len(files["items"]) > 0
    assert sum(f["record_count"] for f in files["items"]) == 5994
    assert all(
        f["path"].startswith(f"s3://{deployed.lake}/e2e/uploads/day=") for f in files["items"]
    )
    rows, distinct, days = read_lake(deployed, files["items"], tmp_path)
    assert (rows, distinct, days) == (5994, 5994, 3)

    # The deployed Commit and Compact published the same table as Iceberg: pyiceberg
    # attaches to the API's REST catalog with a reader token (no database credentials).
    from pyiceberg.catalog.rest import RestCatalog

    ice = deployed.api.call("GET", f"/api/v1/tables/{table['id']}")["iceberg"]
    assert ice["identifier"] == f"{table['namespace']}.uploads" and ice["metadata_location"]
    rest = RestCatalog(
        "lake",
        uri=deployed.outputs["ApiUrl"].rstrip("/") + "/api/v1/iceberg",
        token=make_token("e2e-reader", ["reader"]),
        **{"s3.endpoint": deployed.stack.ENDPOINT, "s3.access-key-id": "test",
           "s3.secret-access-key": "test", "s3.region": "us-east-1"},
    )
    tbl = rest.load_table((table["namespace"], "uploads"))
    assert tbl.metadata_location == ice["metadata_location"]
    assert {t.file.file_path for t in tbl.scan().plan_files()} == {
        f["path"] for f in files["items"]
    }
    assert tbl.scan().to_arrow().num_rows == 5994
    snaps = tbl.snapshots()
    assert [s.summary.operation.value for s in snaps] == ["append", "replace"]
    assert snaps[0].summary.additional_properties["datalake.job-id"] == job["id"]

    batches = deployed.api.call("GET", f"/api/v1/ingestion/jobs/{job['id']}/batches")["items"]
    quarantined = [b["quarantine_key"] for b in batches if b["quarantine_key"]]
    assert quarantined
    body = deployed.stack.client("s3").get_object(Bucket=deployed.lake, Key=quarantined[0])
    first = json.loads(body["Body"].read().decode().splitlines()[0])
    assert first["column"] == "amount" and first["value"] == "oops"

    # The same event delivered again (S3 is at-least-once) starts nothing new.
    lam = deployed.stack.client("lambda")
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": deployed.landing},
                    "object": {"key": "incoming/uploads/part+1.csv", "eTag": "x", "sequencer": "1"},
                },
            }
        ]
    }
    sqs_event = {
        "Records": [
            {
                "messageId": f"m{i}",
                "body": json.dumps(event),
                "receiptHandle": "r",
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q",
                "md5OfBody": "",
                "awsRegion": "us-east-1",
            }
            for i in range(2)
        ]
    }
    fn = next(
        f["FunctionName"]
        for f in lam.list_functions()["Functions"]
        if f["FunctionName"].startswith(STACK) and "Trigger" in f["FunctionName"]
    )
    lam.invoke(FunctionName=fn, Payload=json.dumps(sqs_event).encode())
    lam.invoke(FunctionName=fn, Payload=json.dumps(sqs_event).encode())
    time.sleep(1)
    jobs = deployed.api.call("GET", f"/api/v1/ingestion/jobs?table_id={table['id']}")
    assert jobs["total"] == 2  # the upload's job and exactly one for the replayed event
    second = next(wait_job(deployed, j["id"]) for j in jobs["items"] if j["id"] != job["id"])
    # That event names an ETag the object never had: its job ingests nothing, and says why.
    assert second["status"] == "FAILED" and "replaced after the upload event" in second["error"]
    again = deployed.api.call("GET", f"/api/v1/tables/{table['id']}/files?limit=10000")
    assert sum(f["record_count"] for f in again["items"]) == 5994
    # Cancelling a finished job is a conflict.
    status, _ = deployed.api.request("POST", f"/api/v1/ingestion/jobs/{job['id']}/cancel")
    assert status == 409


def test_api_created_job_runs(deployed: Deployed) -> None:
    table = create_table(deployed, "api_jobs")
    deployed.stack.client("s3").put_object(
        Bucket=deployed.landing, Key="manual/a.csv", Body=csv_rows(1200)
    )
    deployed.stack.client("s3").put_object(
        Bucket=deployed.landing, Key="manual/b.csv", Body=csv_rows(800)
    )
    job = deployed.api.call(
        "POST",
        "/api/v1/ingestion/jobs",
        {
            "table_id": table["id"],
            "sources": [f"s3://{deployed.landing}/manual/"],
            "format": "csv",
        },
    )
    assert job["status"] == "PENDING"
    started = deployed.api.call("POST", f"/api/v1/ingestion/jobs/{job['id']}/start")
    assert started["status"] == "RUNNING"
    done = wait_job(deployed, job["id"])
    assert done["status"] == "SUCCEEDED", done
    assert (done["records_read"], done["records_written"]) == (2000, 2000)
    assert done["batches_total"] == 1  # two small objects share one batch


def test_failed_job_leaves_nothing(deployed: Deployed) -> None:
    table = create_table(deployed, "broken")
    deployed.stack.client("s3").put_object(
        Bucket=deployed.landing, Key="broken/data.parquet", Body=b"this is not parquet" * 100
    )
    job = deployed.api.call(
        "POST",
        "/api/v1/ingestion/jobs",
        {
            "table_id": table["id"],
            "sources": [f"s3://{deployed.landing}/broken/data.parquet"],
            "max_retries": 0,
        },
    )
    deployed.api.call("POST", f"/api/v1/ingestion/jobs/{job['id']}/start")
    done = wait_job(deployed, job["id"])
    assert done["status"] == "FAILED"
    assert done["error"]
    assert deployed.api.call("GET", f"/api/v1/tables/{table['id']}/files")["total"] == 0
    listing = deployed.stack.client("s3").list_objects_v2(
        Bucket=deployed.lake, Prefix="e2e/broken/"
    )
    assert listing.get("KeyCount", 0) == 0
    states = states_entered(deployed, done["execution_arn"])
    assert "Abort" in states and "Commit" not in states
