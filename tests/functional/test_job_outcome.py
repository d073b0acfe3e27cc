"""What a job says about itself: the error that failed it, how often a batch is tried,
its rejected records after it failed, and its counters while it runs and after a cancel.

Step Functions is replaced by calling Plan, the batch message handler (or the worker)
and Commit or Abort in the state machine's order, on moto's S3 and both catalogs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from datalake.catalog.db import session_scope
from datalake.catalog.models import IngestionBatch
from datalake.cli import app as cli_app
from datalake.cli.client import ApiClient
from datalake.errors import QualityGateFailed, TransientError
from datalake.services import batch_messages, jobs, tables, worker
from datalake.services.planning import plan_job
from datalake.tokens import make_token
from tests.fakes import LAKE, LANDING, FakeCallbacks, FakeOrchestrator
from tests.functional.test_faults import lake_keys, message, typed_job
from tests.functional.test_pipeline import CSV, new_job, store

ADMIN = {"Authorization": "Bearer " + make_token("tester", ["admin"])}
#: What the Map's Catch hands Abort when one of its items failed.
MAP_FAILED = "States.ExceedToleratedFailureThreshold: The specified tolerated failure " \
             "threshold was exceeded"


def frozen_job(s3: Any, *, max_retries: int = 2) -> tuple[str, str, str]:
    """A job whose one batch fails with SchemaMismatch: the file has a column the frozen
    table lacks."""
    s3.put_object(Bucket=LANDING, Key="frozen/data.csv", Body=b"a,b\n1,2\n3,4\n")
    with session_scope() as session:
        table = tables.create_table(session, name="frozen",
                                    schema={"fields": [{"name": "a", "type": "long"}]},
                                    schema_policy="freeze")
        job = jobs.create_job(session, table_id=table.id, max_retries=max_retries,
                              sources=[f"s3://{LANDING}/frozen/data.csv"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        job_id = job.id
    plan = plan_job(job_id, store=store())
    return table.id, job_id, plan["batches"][0]["batch_id"]


def run_like_the_state_machine(job_id: str, batch_id: str) -> list[str]:
    """Deliver the batch's message, and again for as long as the worker asks for a retry
    (the IngestBatch state's Retry, a new token each time); returns the error names."""
    callbacks = FakeCallbacks()
    for n in range(12):
        fate = batch_messages.handle_batch_message(
            message(job_id, batch_id, f"token-{n}"), receive_count=1, store=store(),
            callbacks=callbacks,
        )
        if fate != "retry":
            break
    return [name for _, name, _ in callbacks.failed]


def attempts(batch_id: str) -> int:
    with session_scope() as session:
        batch = session.get(IngestionBatch, batch_id)
        assert batch is not None
        return batch.attempts


# --- item 4: the cause, and no retry of what cannot change -----------------------------


def test_a_failed_jobs_error_is_its_batchs_schema_mismatch(s3: Any) -> None:
    _, job_id, batch_id = frozen_job(s3)
    run_like_the_state_machine(job_id, batch_id)
    with session_scope() as session:
        job = jobs.abort_job(session, job_id, error=MAP_FAILED, store=store())
        batch = session.get(IngestionBatch, batch_id)
        assert batch is not None and batch.status == "FAILED"
        assert batch.error is not None and batch.error.startswith("SchemaMismatch: ")
        assert job.status == "FAILED" and job.error == batch.error


def test_a_schema_mismatch_is_attempted_once_and_a_transient_error_again(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job_id, batch_id = frozen_job(s3, max_retries=3)
    assert run_like_the_state_machine(job_id, batch_id) == [batch_messages.FAILED]
    assert attempts(batch_id) == 1, "a deterministic error is not retried"

    _, other = typed_job(s3, CSV, "transient")
    other_batch = plan_job(other, store=store())["batches"][0]["batch_id"]
    real = worker.ingest_splits
    calls: list[int] = []

    def drops_the_first_two(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise TransientError("the catalog connection dropped")
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "ingest_splits", drops_the_first_two)
    names = run_like_the_state_machine(other, other_batch)
    assert names == [batch_messages.RETRY, batch_messages.RETRY]
    assert attempts(other_batch) == 3, "a transient error is retried until it clears"


def test_the_worker_answers_a_schema_mismatch_and_raises_nothing_for_sqs(s3: Any) -> None:
    """The queue redelivers only what the handler raises: a deterministic failure is
    answered (BatchFailed) and the record is not reported as a batch item failure."""
    from tests.functional.test_handlers import CTX, event, load_handler

    _, job_id, batch_id = frozen_job(s3)
    handler = load_handler("ingest_batch")
    handler.callbacks = FakeCallbacks()
    sqs = event("ingest_batch_sqs.json", REPLACE_JOB_ID=job_id, REPLACE_BATCH_ID=batch_id,
                REPLACE_TASK_TOKEN="tok")
    assert handler.lambda_handler(sqs, CTX) == {"batchItemFailures": []}
    assert [f[1] for f in handler.callbacks.failed] == [batch_messages.FAILED]
    assert attempts(batch_id) == 1


# --- item 6: a failed job's quarantine stays readable -------------------------------------


class InProcessApi(ApiClient):
    """The CLI's API client, answered by the in-process API instead of over HTTP."""

    def __init__(self, client: Any) -> None:
        super().__init__("http://testserver", ADMIN["Authorization"].removeprefix("Bearer "))
        self.client = client

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        r = self.client.request(method, path, json=body, headers={**ADMIN, **(headers or {})})
        return r.status_code, (r.json() if r.content else None)


def cli(api: Any, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(cli_app.State, "api", property(lambda self: InProcessApi(api)))
    return cli_app.run(list(args))


def gated_job(s3: Any) -> tuple[str, str]:
    """A job refused by its table's max_rejected_ratio, then aborted as the Catch does."""
    bad = CSV + "".join(f"{i},not-a-time,AA,1\n" for i in range(2000, 2100))
    table_id, job_id = typed_job(s3, bad, "gated")
    with session_scope() as session:
        tables.update_table(session, table_id, {"max_rejected_ratio": 0.01})
    for item in plan_job(job_id, store=store())["batches"]:
        worker.run_batch(job_id, item["batch_id"], store=store())
    with pytest.raises(QualityGateFailed) as refused:
        jobs.publish_job(job_id, store=store())
    with session_scope() as session:
        jobs.abort_job(session, job_id, error=f"QualityGateFailed: {refused.value}",
                       store=store())
    return table_id, job_id


def test_a_gated_jobs_rejects_are_readable_after_abort(
    s3: Any, api: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, job_id = gated_job(s3)
    assert not [k for k in lake_keys(s3) if k.endswith(".parquet")], "its data is deleted"
    r = api.get(f"/api/v1/ingestion/jobs/{job_id}/rejects", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total"], body["records_rejected"], body["gone"]) == (100, 100, False)
    assert len(body["items"]) == 100 and {i["value"] for i in body["items"]} == {"not-a-time"}
    assert cli(api, monkeypatch, "rejects", job_id, "--json", "--limit", "5") == 0
    printed = capsys.readouterr().out  # the API's request log lines come first
    shown = json.loads(printed[printed.index("{\n"):])
    assert shown["total"] == 100 and len(shown["items"]) == 5


def test_a_quarantine_that_is_gone_is_one_readable_line(
    s3: Any, api: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, job_id = gated_job(s3)
    for key in [k for k in lake_keys(s3) if k.startswith("_quarantine/")]:
        s3.delete_object(Bucket=LAKE, Key=key)  # as the lifecycle rule expires it
    r = api.get(f"/api/v1/ingestion/jobs/{job_id}/rejects", headers=ADMIN)
    assert r.status_code == 200 and r.json()["gone"] is True
    assert "are gone" in r.json()["note"]
    assert cli(api, monkeypatch, "rejects", job_id) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the rejected records of job ")
    assert "NoSuchKey" not in captured.err and "Traceback" not in captured.err


# --- item 8: counters while a job runs, and batches after a cancel ------------------------


def test_a_running_jobs_counters_are_its_finished_batches(s3: Any, api: Any) -> None:
    table_id, job_id = new_job(s3, split_size_mb=0.01)
    plan = plan_job(job_id, store=store())
    assert plan["batch_count"] > 2
    done = [worker.run_batch(job_id, item["batch_id"], store=store())
            for item in plan["batches"][:2]]
    read = sum(o.records_read for o in done)
    assert read > 0
    one = api.get(f"/api/v1/ingestion/jobs/{job_id}", headers=ADMIN).json()
    page = api.get("/api/v1/ingestion/jobs", params={"table_id": table_id}, headers=ADMIN)
    listed = page.json()["items"][0]
    for shown in (one, listed):
        assert shown["status"] == "RUNNING"
        assert (shown["batches_total"], shown["batches_succeeded"]) == (plan["batch_count"], 2)
        assert shown["records_read"] == shown["records_written"] == read
        assert shown["batches_failed"] == shown["records_rejected"] == 0


def test_a_cancel_marks_the_jobs_unfinished_batches_cancelled(s3: Any) -> None:
    _, job_id = new_job(s3, split_size_mb=0.01)
    plan = plan_job(job_id, store=store())
    first = plan["batches"][0]["batch_id"]
    worker.run_batch(job_id, first, store=store())
    with session_scope() as session:
        jobs.cancel_job(session, job_id, orchestrator=None, store=store())
    with session_scope() as session:
        batches, _ = jobs.list_batches(session, job_id)
        statuses = {b.id: b.status for b in batches}
    assert statuses.pop(first) == "SUCCEEDED"
    assert set(statuses.values()) == {"CANCELLED"}
    # A late delivery of a cancelled batch records nothing and leaves it CANCELLED.
    late = plan["batches"][1]["batch_id"]
    with pytest.raises(jobs.JobCancelled):
        worker.run_batch(job_id, late, store=store())
    assert attempts(late) == 0
