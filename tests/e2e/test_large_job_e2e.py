"""A job of 2,500 batches planned and run through the Distributed Map on the local stack.

Long (LocalStack's queue poller runs one worker at a time): ``make soak`` runs it, not
``make test``. It proves that the batch list lives in S3 (the state payload holds only
where it is) and that every batch ran exactly once.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.test_ingest_e2e import Deployed, create_table, csv_rows, deployed, wait_job

pytestmark = [pytest.mark.localstack, pytest.mark.postgres, pytest.mark.soak]
__all__ = ["deployed"]

BATCHES = 2500


@pytest.mark.timeout(7200)
def test_a_2500_batch_job_runs_through_the_map(deployed: Deployed) -> None:
    d = deployed
    table = create_table(d, "large_job")
    rows = 50_000
    data = csv_rows(rows)
    d.stack.client("s3").put_object(Bucket=d.landing, Key="large/a.csv", Body=data)
    split_mb = len(data) / BATCHES / 2**20  # byte ranges of about len/2500
    t0 = time.monotonic()
    job = d.api.call("POST", "/api/v1/ingestion/jobs", {
        "table_id": table["id"], "sources": [f"s3://{d.landing}/large/a.csv"], "format": "csv",
        "options": {"split_size_mb": split_mb, "batch_size": 1000}, "timeout_seconds": 120,
    })
    job = d.api.call("POST", f"/api/v1/ingestion/jobs/{job['id']}/start")
    done = wait_job(d, job["id"], timeout=7000)
    wall = time.monotonic() - t0
    assert done["status"] == "SUCCEEDED", done
    assert done["batches_total"] >= BATCHES - 5, done["batches_total"]
    assert (done["records_read"], done["records_written"]) == (rows, rows)
    sfn = d.stack.client("stepfunctions")
    history: list[dict[str, Any]] = sfn.get_execution_history(
        executionArn=job["execution_arn"], maxResults=1000)["events"]
    plan_out = next(
        json.loads(e["taskSucceededEventDetails"]["output"]) for e in history
        if "taskSucceededEventDetails" in e and "items_key" in e["taskSucceededEventDetails"].get(
            "output", ""))
    assert "batches" not in plan_out["Payload"], "the batch list stays out of the state"
    print(f"\n{done['batches_total']} batches, {rows} rows: SUCCEEDED in {wall:.0f} s "
          f"({done['batches_total'] / wall:.1f} batches/s), {len(history)} events in the "
          f"parent execution's history")
