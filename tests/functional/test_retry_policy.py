"""One retry policy per step: Plan and Commit raise what the state machine retries
(``infra/ingest_job.asl.json``) instead of looping under its Retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from datalake.catalog.db import session_scope
from datalake.errors import CommitConflict, TransientError
from datalake.services import iceberg, jobs, planning
from datalake.services.worker import run_batch
from tests.functional.test_pipeline import new_job, store

ROOT = Path(__file__).resolve().parents[2]


def retried_errors(state: str) -> set[str]:
    definition = json.loads((ROOT / "infra" / "ingest_job.asl.json").read_text())
    return {e for r in definition["States"][state]["Retry"] for e in r["ErrorEquals"]}


@pytest.mark.parametrize("state", ["Plan", "Commit"])
def test_the_state_machine_retries_the_errors_plan_and_commit_raise(state: str) -> None:
    # A Lambda's error type is the exception's class name.
    assert {CommitConflict.__name__, TransientError.__name__} <= retried_errors(state)


def test_the_state_machine_retries_a_batch_only_on_the_workers_transient_name() -> None:
    from datalake.services import batch_messages

    definition = json.loads((ROOT / "infra" / "ingest_job.asl.json").read_text())
    task = definition["States"]["Batches"]["ItemProcessor"]["States"]["IngestBatch"]
    retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
    assert batch_messages.RETRY in retried
    # A deterministic error (or retries exhausted) and a cancel end the item at once.
    assert not {batch_messages.FAILED, batch_messages.CANCELLED, "States.ALL",
                "States.TaskFailed"} & retried


def test_a_plan_that_loses_a_schema_race_raises_for_the_state_machine_to_retry(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job_id = new_job(s3)
    real = planning._settle_schema
    calls: list[str] = []

    def lose_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(job_id)
        if len(calls) == 1:
            raise CommitConflict("a concurrent job evolved the schema first")
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "_settle_schema", lose_once)
    with pytest.raises(CommitConflict):
        planning.plan_job(job_id, store=store())
    assert len(calls) == 1, "no retry inside Plan: the state machine's is the one"
    plan = planning.plan_job(job_id, store=store())  # the state machine's retry
    assert plan["batch_count"] >= 1 and len(calls) == 2


def test_a_commit_whose_iceberg_publish_conflicts_raises_at_once(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job_id = new_job(s3)
    for item in planning.plan_job(job_id, store=store())["batches"]:
        run_batch(job_id, item["batch_id"], store=store())
    tries: list[int] = []

    def conflicting(table_id: str, **kwargs: Any) -> Any:
        tries.append(kwargs.get("attempts", iceberg.PUBLISH_ATTEMPTS))
        raise iceberg.IcebergPublishError("the Iceberg table kept changing underneath")

    monkeypatch.setattr(iceberg, "enabled", lambda settings=None: True)
    monkeypatch.setattr(iceberg, "publish_table", conflicting)
    with pytest.raises(TransientError):
        jobs.publish_job(job_id, store=store())
    assert tries == [1], "Commit tries its publish once; the state machine retries Commit"
    with session_scope() as session:
        # The catalog's commit stands; SUCCEEDED waits for the publish (Commit's retry).
        assert jobs.get_job(session, job_id).status == "COMMITTING"
