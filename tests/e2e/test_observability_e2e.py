"""One job's correlation id, followed through the logs of the API, Plan, a worker and
Commit on the local stack.

The LocalStack executor runs every function as a local process and appends its stdout to
``.datalake/lambda-logs/<function name>.log`` (as CloudWatch Logs would hold it): these
are the JSON lines of the Powertools Logger and the EMF documents of Powertools Metrics.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from datalake.cli import ApiClient
from datalake.tokens import make_token
from tests.e2e.test_ingest_e2e import STACK, Deployed, create_table, csv_rows, deployed, wait_job

pytestmark = [pytest.mark.localstack, pytest.mark.postgres]
__all__ = ["deployed"]
FUNCTIONS = ("Api", "Plan", "IngestBatch", "Commit")


#: Functions the template names itself (``${AWS::StackName}-api``); the others get
#: CloudFormation's generated ``<stack>-<LogicalId>-<suffix>`` names.
FIXED_NAMES = {"Api": f"{STACK}-api"}


def log_lines(log_dir: Path, function: str, correlation_id: str) -> list[dict[str, Any]]:
    """The JSON documents of one function's log that carry ``correlation_id``."""
    found = []
    pattern = (
        f"{FIXED_NAMES[function]}.log"
        if function in FIXED_NAMES
        else (f"{STACK}-{function}Function-*.log")
    )
    for path in log_dir.glob(pattern):
        for line in path.read_text(errors="replace").splitlines():
            if correlation_id not in line or not line.startswith("{"):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("correlation_id") == correlation_id:
                found.append(doc)
    return found


def test_one_jobs_correlation_id_runs_through_api_plan_worker_and_commit(
    deployed: Deployed,
) -> None:
    d = deployed
    table = create_table(d, "correlated")
    d.stack.client("s3").put_object(Bucket=d.landing, Key="correlated/a.csv", Body=csv_rows(300))
    cid = f"e2e-corr-{uuid.uuid4().hex}"
    api = ApiClient(d.outputs["ApiUrl"], make_token("e2e", ["admin"]), timeout=120)
    api.correlation_id = cid  # sent as X-Correlation-Id
    job = api.call(
        "POST",
        "/api/v1/ingestion/jobs",
        {"table_id": table["id"], "sources": [f"s3://{d.landing}/correlated/a.csv"]},
    )
    status, body = api.request("POST", f"/api/v1/ingestion/jobs/{job['id']}/start")
    assert status == 202, body
    done = wait_job(d, job["id"])
    assert done["status"] == "SUCCEEDED", done

    log_dir = Path(d.stack.LAMBDA_LOG_DIR)
    deadline = time.monotonic() + 30
    lines: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:  # the executor appends output as it comes
        lines = {f: log_lines(log_dir, f, cid) for f in FUNCTIONS}
        if all(lines.values()) and any(m.get("message") == "committed" for m in lines["Commit"]):
            break
        time.sleep(1)
    missing = [f for f in FUNCTIONS if not lines.get(f)]
    assert not missing, f"no log line with correlation id {cid} from {missing} in {log_dir}"

    def messages(function: str) -> dict[str, dict[str, Any]]:
        return {m["message"]: m for m in lines[function] if "message" in m}

    api_lines = messages("Api")
    assert api_lines["job started"]["job_id"] == job["id"]
    assert api_lines["request"]["function"] == "api"
    assert messages("Plan")["planned"]["job_id"] == job["id"]
    batch_done = messages("IngestBatch")["batch done"]
    assert batch_done["job_id"] == job["id"] and batch_done["batch_id"]
    assert batch_done["records_written"] == 300
    assert messages("Commit")["committed"]["job_id"] == job["id"]
    # The worker's embedded metrics carry it too (as metadata), with the batch's figures.
    emf = [m for m in lines["IngestBatch"] if "_aws" in m]
    assert emf and emf[0]["BatchRecordsWritten"] in (300, [300], [300.0], 300.0)
    assert emf[0]["job_id"] == job["id"]
