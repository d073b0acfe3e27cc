"""Faults on the local stack (LocalStack, Postgres catalog): a batch message delivered
again while its first worker runs and after the job finished, a cancel in the middle of a
many-batch Map, and twenty jobs started at once under a short batch timeout.

LocalStack's queue poller runs workers one at a time, so a concurrent delivery is made by
invoking the worker function directly (asynchronously) with the same SQS body.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_ingest_e2e import (
    STACK,
    Deployed,
    create_table,
    csv_rows,
    deployed,
    read_lake,
    wait_job,
)

pytestmark = [pytest.mark.localstack, pytest.mark.postgres]
__all__ = ["deployed"]  # the module-scoped fixture, shared with the ingest tests


def function_name(d: Deployed, part: str) -> str:
    lam = d.stack.client("lambda")
    return next(
        f["FunctionName"]
        for f in lam.list_functions()["Functions"]
        if f["FunctionName"].startswith(STACK) and part in f["FunctionName"]
    )


def set_worker_polling(d: Deployed, enabled: bool) -> None:
    """Switch the batch queue's event source mapping on or off (and wait for it)."""
    lam = d.stack.client("lambda")
    fn = function_name(d, "IngestBatch")
    mapping = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"][0]
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)
    want = "Enabled" if enabled else "Disabled"
    deadline = time.monotonic() + 60
    while lam.get_event_source_mapping(UUID=mapping["UUID"])["State"] != want:
        assert time.monotonic() < deadline, f"the mapping never became {want}"
        time.sleep(0.5)
    time.sleep(2 if not enabled else 0)  # a poll already under way returns


def take_messages(d: Deployed, n: int, timeout: float = 120) -> list[str]:
    """Receive (and remove) ``n`` batch messages from the queue while no worker polls."""
    sqs = d.stack.client("sqs")
    url = d.outputs["BatchQueueUrl"]
    bodies: list[str] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < n:
        assert time.monotonic() < deadline, f"only {len(bodies)} batch messages arrived"
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=n - len(bodies),
                                  WaitTimeSeconds=2, VisibilityTimeout=600)
        for m in got.get("Messages", []):
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def deliver_again(d: Deployed, body: str, receive_count: int = 2) -> None:
    """Invoke the batch worker asynchronously with an SQS-shaped event of ``body``."""
    event = {"Records": [{
        "messageId": f"again-{time.monotonic_ns()}", "receiptHandle": "r",
        "body": body, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:batch", "awsRegion": "us-east-1",
        "attributes": {"ApproximateReceiveCount": str(receive_count)}, "messageAttributes": {},
    }]}
    d.stack.client("lambda").invoke(
        FunctionName=function_name(d, "IngestBatch"), InvocationType="Event",
        Payload=json.dumps(event).encode(),
    )


def lake_keys(d: Deployed, prefix: str) -> list[str]:
    s3 = d.stack.client("s3")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=d.lake, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def start_job(d: Deployed, table_id: str, uri: str, **body: Any) -> dict[str, Any]:
    job = d.api.call("POST", "/api/v1/ingestion/jobs",
                     {"table_id": table_id, "sources": [uri], "format": "csv", **body})
    return dict(d.api.call("POST", f"/api/v1/ingestion/jobs/{job['id']}/start"))


def test_redelivered_batch_messages_never_lose_or_double_rows(
    deployed: Deployed, tmp_path: Path
) -> None:
    """Three batch messages are each delivered three times: twice through the queue (one
    after the other, as LocalStack's serial poller runs them) and once by a direct
    asynchronous invocation running beside them; and once more after the job finished."""
    d = deployed
    table = create_table(d, "redelivered")
    d.stack.client("s3").put_object(Bucket=d.landing, Key="redeliver/a.csv",
                                    Body=csv_rows(20_000))
    set_worker_polling(d, False)
    try:
        job = start_job(d, table["id"], f"s3://{d.landing}/redeliver/a.csv",
                        options={"split_size_mb": 0.1, "batch_size": 500})
        bodies = take_messages(d, 3)
        sqs = d.stack.client("sqs")
        for body in bodies:
            for _ in range(2):
                sqs.send_message(QueueUrl=d.outputs["BatchQueueUrl"], MessageBody=body)
    finally:
        set_worker_polling(d, True)
    for body in bodies:  # concurrently with the queue's deliveries
        deliver_again(d, body)
    done = wait_job(d, job["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["batches_total"] > 3
    for body in bodies:  # after the job finished
        deliver_again(d, body, receive_count=3)
    time.sleep(5)  # let the late deliveries run (each finds the job finished)
    files = d.api.call("GET", f"/api/v1/tables/{table['id']}/files?limit=10000")["items"]
    rows, distinct, _days = read_lake(d, files, tmp_path)  # checksums checked too
    assert (rows, distinct) == (20_000, 20_000)
    assert done["records_written"] == 20_000


def test_cancel_in_the_middle_of_a_many_batch_map_leaves_nothing(deployed: Deployed) -> None:
    d = deployed
    table = create_table(d, "cancelled_mid_map")
    d.stack.client("s3").put_object(Bucket=d.landing, Key="cancel/a.csv",
                                    Body=csv_rows(30_000, bad_every=100))
    job = start_job(d, table["id"], f"s3://{d.landing}/cancel/a.csv",
                    options={"split_size_mb": 0.05, "batch_size": 500})
    deadline = time.monotonic() + 180
    while True:
        batches = d.api.call("GET", f"/api/v1/ingestion/jobs/{job['id']}/batches")["items"]
        if sum(b["status"] == "SUCCEEDED" for b in batches) >= 2:
            break
        assert time.monotonic() < deadline, "no batch finished"
        time.sleep(0.3)
    assert len(batches) > 8
    cancelled = d.api.call("POST", f"/api/v1/ingestion/jobs/{job['id']}/cancel")
    assert cancelled["status"] == "CANCELLED"
    sfn = d.stack.client("stepfunctions")
    deadline = time.monotonic() + 240
    while sfn.describe_execution(executionArn=job["execution_arn"])["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the cancelled execution never ended"
        time.sleep(1)
    time.sleep(3)  # a worker that was mid-batch finishes and removes its own objects
    final = d.api.call("GET", f"/api/v1/ingestion/jobs/{job['id']}")
    assert final["status"] == "CANCELLED"
    assert d.api.call("GET", f"/api/v1/tables/{table['id']}/files")["total"] == 0
    left = [k for k in lake_keys(d, "") if job["id"] in k]
    assert left == [], f"objects of the cancelled job remain: {left[:5]}"


def test_twenty_jobs_at_once_under_a_short_batch_timeout_all_succeed(deployed: Deployed) -> None:
    d = deployed
    table = create_table(d, "twenty")
    d.stack.client("s3").put_object(Bucket=d.landing, Key="twenty/a.csv", Body=csv_rows(3000))
    uri = f"s3://{d.landing}/twenty/a.csv"
    t0 = time.monotonic()
    started: list[dict[str, Any]] = []
    lock = threading.Lock()

    def go() -> None:
        job = start_job(d, table["id"], uri, timeout_seconds=20,
                        options={"split_size_mb": 0.03, "batch_size": 500})
        with lock:
            started.append(job)

    threads = [threading.Thread(target=go) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(started) == 20
    done = [wait_job(d, j["id"], timeout=900) for j in started]
    wall = time.monotonic() - t0
    assert [j["status"] for j in done] == ["SUCCEEDED"] * 20, [j["error"] for j in done]
    assert all(j["records_written"] == 3000 and j["batches_total"] >= 3 for j in done)
    from datetime import datetime

    slowest = max(
        (datetime.fromisoformat(j["finished_at"]) - datetime.fromisoformat(j["started_at"]))
        .total_seconds() for j in done
    )
    batches = sum(j["batches_total"] for j in done)
    print(f"\n20 jobs, {batches} batches, timeout_seconds=20: wall {wall:.1f} s, "
          f"slowest job {slowest:.1f} s")
