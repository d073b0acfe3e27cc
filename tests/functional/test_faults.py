"""Faults, for real: two attempts at one batch at once, a cancel racing a worker's record,
a dropped catalog connection at Commit, dead task tokens, timeouts, the quality gate.

Each test names the protection it proves; the README's fault matrix points here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, DataSource, IngestionBatch
from datalake.errors import BatchTimeout, QualityGateFailed, TransientError
from datalake.services import batch_messages, jobs, tables, worker
from datalake.services.jobs import JobCancelled
from datalake.services.planning import plan_job
from tests.fakes import LAKE, FakeCallbacks, FakeOrchestrator
from tests.functional.test_pipeline import CSV, new_job, read_committed, store


def lake_keys(s3: Any) -> set[str]:
    out: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE):
        out.update(o["Key"] for o in page.get("Contents", []))
    return out


def written_keys(s3: Any) -> set[str]:
    """What attempts wrote: the lake without the batch lists Plan leaves for the Map."""
    return {k for k in lake_keys(s3) if not k.startswith("_plans/")}


def committed_keys(table_id: str) -> set[str]:
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id, limit=100_000)
        return {f.key for f in files}


SCHEMA = {"fields": [{"name": "id", "type": "long"}, {"name": "ts", "type": "timestamp"},
                     {"name": "carrier", "type": "string"}, {"name": "delay", "type": "long"}]}


def typed_job(s3: Any, body: str, name: str) -> tuple[str, str]:
    """A job into a table with a declared schema, so bad values are quarantined."""
    s3.put_object(Bucket="landing", Key=f"in/{name}.csv", Body=body.encode())
    with session_scope() as session:
        table = tables.create_table(session, name=name, schema=SCHEMA,
                                    partitioning=[{"column": "ts", "transform": "day"}])
        job = jobs.create_job(session, table_id=table.id,
                              sources=[f"s3://landing/in/{name}.csv"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        return table.id, job.id


def one_batch_job(s3: Any, table_name: str = "t") -> tuple[str, str, str]:
    table_id, job_id = new_job(s3, table_name=table_name)
    plan = plan_job(job_id, store=store())
    assert plan["batch_count"] == 1
    return table_id, job_id, plan["batches"][0]["batch_id"]


def assert_exact(s3: Any, table_id: str) -> None:
    ids = read_committed(s3, table_id).column("id").to_pylist()
    assert sorted(ids) == list(range(2000)), "every row committed exactly once"
    assert committed_keys(table_id) <= lake_keys(s3), "every committed object exists"


class Gate:
    """Holds a thread at a point until the test lets it go."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def wait_here(self) -> None:
        self.reached.set()
        assert self.go.wait(60), "the test never released the gate"


def in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the test thread
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


# --- two attempts at one batch ---------------------------------------------------------


def test_a_redelivery_running_while_the_job_commits_deletes_nothing_committed(s3: Any) -> None:
    """Protection: attempt-unique keys. The second delivery started while the job was
    RUNNING, wrote while the first attempt recorded and the job committed, then found the
    job SUCCEEDED: it deletes its own objects, never the committed ones."""
    table_id, job_id, batch_id = one_batch_job(s3)
    gate = Gate()
    late, box = in_thread(worker.run_batch, job_id, batch_id, store=store(),
                          on_progress=gate.wait_here)
    assert gate.reached.wait(60)
    worker.run_batch(job_id, batch_id, store=store())  # the first delivery, to the end
    jobs.publish_job(job_id, store=store())
    gate.go.set()
    late.join(60)
    assert isinstance(box.get("error"), JobCancelled)  # "job ... is SUCCEEDED"
    assert_exact(s3, table_id)
    parquet = {k for k in lake_keys(s3) if k.endswith(".parquet")}
    assert parquet == committed_keys(table_id), "the late attempt left nothing behind"


def test_two_attempts_recording_at_the_same_moment_commit_one(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protection: compare-and-set on the batch row. Both attempts finish writing, then
    record at the same instant (a barrier); exactly one set of files is the batch's."""
    table_id, job_id, batch_id = one_batch_job(s3)
    barrier = threading.Barrier(2, timeout=60)
    real_record = worker._record

    def record_together(*args: Any, **kwargs: Any) -> Any:
        barrier.wait()
        return real_record(*args, **kwargs)

    monkeypatch.setattr(worker, "_record", record_together)
    runs = [in_thread(worker.run_batch, job_id, batch_id, store=store()) for _ in range(2)]
    for t, _ in runs:
        t.join(120)
    outcomes = [box["result"] for _, box in runs]
    assert all(o.status == "SUCCEEDED" for o in outcomes)
    assert outcomes[0] == outcomes[1], "the loser reports the winner's outcome"
    with session_scope() as session:
        batch = session.get(IngestionBatch, batch_id)
        assert batch is not None and batch.attempts == 2
        rows = session.scalar(select(func.count()).where(DataFile.batch_id == batch_id))
        assert rows == outcomes[0].files
    jobs.publish_job(job_id, store=store())
    assert_exact(s3, table_id)
    parquet = {k for k in lake_keys(s3) if k.endswith(".parquet")}
    assert parquet == committed_keys(table_id), "the loser deleted its own objects"


def test_a_failing_attempt_deletes_only_its_own_objects(s3: Any) -> None:
    """Protection: attempt-unique keys on the failure path. An attempt that has uploaded
    its data files fails at its last step (the quarantine upload) after another delivery
    recorded the batch: it deletes what it wrote, not the recorded files."""
    from datalake.aws.s3 import S3ObjectStore

    table_id, job_id = typed_job(s3, CSV + "2000,not-a-time,AA,1\n", "f")
    batch_id = plan_job(job_id, store=store())["batches"][0]["batch_id"]

    class FailsAtQuarantine(S3ObjectStore):
        failed = False

        def put_file(self, bucket: str, key: str, path: str) -> None:
            if key.endswith(".jsonl") and not self.failed:
                self.failed = True
                worker.run_batch(job_id, batch_id, store=store())  # the other delivery
                raise ConnectionError("quarantine upload failed")
            super().put_file(bucket, key, path)

    with pytest.raises(ConnectionError):
        worker.run_batch(job_id, batch_id, store=FailsAtQuarantine())
    jobs.publish_job(job_id, store=store())
    ids = read_committed(s3, table_id).column("id").to_pylist()
    assert sorted(ids) == list(range(2000))
    assert committed_keys(table_id) <= lake_keys(s3), "every committed object exists"


# --- cancel against a worker ---------------------------------------------------------


@pytest.mark.parametrize("rounds", [3])
def test_a_cancel_racing_a_workers_record_leaves_nothing(
    s3: Any, monkeypatch: pytest.MonkeyPatch, rounds: int
) -> None:
    """Protection: the worker records under the job row's lock. The worker has read the
    job and is about to insert its files when the cancel commits; either the cancel sees
    the files (and deletes them) or the worker sees CANCELLED (and deletes its own)."""
    real_claim = worker._claim
    inside = threading.Event()

    def slow_claim(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        time.sleep(0.5)  # the cancel arrives now
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(worker, "_claim", slow_claim)
    for n in range(rounds):
        inside.clear()
        _, job_id, batch_id = one_batch_job(s3, table_name=f"t{n}")
        t, box = in_thread(worker.run_batch, job_id, batch_id, store=store())
        assert inside.wait(60)
        with session_scope() as session:
            jobs.cancel_job(session, job_id, orchestrator=None, store=store())
        t.join(60)
        with session_scope() as session:
            assert jobs.get_job(session, job_id).status == "CANCELLED"
            left = session.scalar(select(func.count()).where(DataFile.job_id == job_id))
        assert left == 0, "no file row of a cancelled job survives"
        assert not [k for k in lake_keys(s3) if job_id in k], "no object of it either"
        assert "error" in box or box["result"].status == "SUCCEEDED"


class BrokenStop(FakeOrchestrator):
    def stop(self, execution_id: str, *, reason: str) -> None:
        raise ConnectionError("states.us-east-1.amazonaws.com: connection reset")


def test_a_cancel_whose_stop_call_fails_is_still_a_clean_cancel(s3: Any) -> None:
    """Protection: the cancel commits before StopExecution; any error of that call is
    logged and the job is CANCELLED, its objects (data and quarantine) gone."""
    bad = CSV + "2000,not-a-time,AA,1\n"
    _, job_id = typed_job(s3, bad, "bad")
    plan = plan_job(job_id, store=store())
    for item in plan["batches"]:
        worker.run_batch(job_id, item["batch_id"], store=store())
    assert any("_quarantine" in k for k in lake_keys(s3))
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        job.execution_arn = "arn:aws:states:us-east-1:0:execution:ingest:" + job_id
    with session_scope() as session:
        jobs.cancel_job(session, job_id, orchestrator=BrokenStop(), store=store())
    with session_scope() as session:
        assert jobs.get_job(session, job_id).status == "CANCELLED"
    with session_scope() as session, pytest.raises(JobCancelled):
        jobs.commit_job(session, job_id)
    assert lake_keys(s3) == set(), "data and quarantine objects are deleted"


# --- start ----------------------------------------------------------------------------


class ReadsStatus(FakeOrchestrator):
    """A workflow whose first step reads the job on its own connection, as Plan does."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.fail = fail

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        with session_scope() as session:
            self.seen.append(jobs.get_job(session, job_id).status)
        if self.fail:
            raise ConnectionError("StartExecution: connection reset")
        return super().start(job_id, payload)


def test_running_is_committed_before_the_workflow_starts(s3: Any) -> None:
    s3.put_object(Bucket="landing", Key="s/a.csv", Body=b"id\n1\n")
    with session_scope() as session:
        table = tables.create_table(session, name="s")
        job = jobs.create_job(session, table_id=table.id, sources=["s3://landing/s/a.csv"])
        job_id = job.id
    broken = ReadsStatus(fail=True)
    with session_scope() as session, pytest.raises(TransientError, match="PENDING again"):
        jobs.start_job(session, job_id, orchestrator=broken)
    with session_scope() as session:
        assert jobs.get_job(session, job_id).status == "PENDING"
    orchestrator = ReadsStatus()
    with session_scope() as session:
        jobs.start_job(session, job_id, orchestrator=orchestrator)
    assert broken.seen == ["RUNNING"] and orchestrator.seen == ["RUNNING"]


# --- Commit under a dropped connection ---------------------------------------------------


@pytest.fixture
def postgres_only(use_catalog: str) -> Iterator[str]:
    if not use_catalog.startswith("postgresql"):
        pytest.skip("kills a Postgres backend")
    yield use_catalog


def test_a_connection_killed_at_commit_is_transient_and_the_retry_commits(
    s3: Any, postgres_only: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real fault: the server terminates Commit's connection just before COMMIT. The
    caller gets TransientError (retried by the state machine), nothing is half-done, and
    the retry publishes every row once."""
    from sqlalchemy import text

    table_id, job_id = new_job(s3, split_size_mb=0.01)
    plan = plan_job(job_id, store=store())
    for item in plan["batches"]:
        worker.run_batch(job_id, item["batch_id"], store=store())
    real_commit = jobs.commit_job
    killed = {"n": 0}

    def commit_then_lose_the_connection(session: Any, jid: str) -> Any:
        job = real_commit(session, jid)
        if not killed["n"]:
            killed["n"] += 1
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
            with session_scope() as other:
                other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        return job

    monkeypatch.setattr(jobs, "commit_job", commit_then_lose_the_connection)
    with pytest.raises(TransientError):
        jobs.publish_job(job_id, store=store())
    with session_scope() as session:
        assert jobs.get_job(session, job_id).status == "RUNNING"
        assert committed_keys(table_id) == set()
    jobs.publish_job(job_id, store=store())
    assert_exact(s3, table_id)


# --- the quality gate --------------------------------------------------------------------


def test_a_job_over_the_tables_rejected_ratio_commits_nothing(s3: Any) -> None:
    bad = CSV + "".join(f"{i},not-a-time,AA,1\n" for i in range(2000, 2100))  # ~4.8%
    table_id, job_id = typed_job(s3, bad, "q")
    with session_scope() as session:
        tables.update_table(session, table_id, {"max_rejected_ratio": 0.01})
    plan = plan_job(job_id, store=store())
    for item in plan["batches"]:
        worker.run_batch(job_id, item["batch_id"], store=store())
    with pytest.raises(QualityGateFailed, match="100 of 2100 records rejected") as err:
        jobs.publish_job(job_id, store=store())
    with session_scope() as session:
        job = jobs.abort_job(session, job_id, error=f"QualityGateFailed: {err.value}",
                             store=store())
        assert job.status == "FAILED" and "max_rejected_ratio" in (job.error or "")
    assert committed_keys(table_id) == set()
    # Its data is deleted; its quarantine stays (for `rejects`) until the lake's rule expires it.
    assert {k.split("/", 1)[0] for k in lake_keys(s3)} == {"_quarantine"}
    with session_scope() as session:  # under the gate it commits
        tables.update_table(session, table_id, {"max_rejected_ratio": 0.05})


# --- batch messages: dead tokens, heartbeats, timeouts -----------------------------------


def message(job_id: str, batch_id: str, token: str, timeout: float | None = None) -> str:
    import json

    body: dict[str, Any] = {"job_id": job_id, "batch_id": batch_id, "task_token": token}
    if timeout is not None:
        body["timeout_seconds"] = timeout
    return json.dumps(body)


def test_a_message_whose_task_timed_out_is_dropped_unprocessed(s3: Any) -> None:
    _, job_id, batch_id = one_batch_job(s3)
    callbacks = FakeCallbacks(dead={"old-token"})
    fate = batch_messages.handle_batch_message(
        message(job_id, batch_id, "old-token"), receive_count=2, store=store(),
        callbacks=callbacks,
    )
    assert fate == "dropped" and not callbacks.ok and not callbacks.failed
    with session_scope() as session:
        batch = session.get(IngestionBatch, batch_id)
        assert batch is not None and batch.attempts == 0 and batch.status == "PENDING"
    assert written_keys(s3) == set()


def test_an_attempt_whose_token_dies_while_it_runs_stops_and_cleans_up(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job_id, batch_id = one_batch_job(s3)
    monkeypatch.setattr(batch_messages, "HEARTBEAT_EVERY_S", 0.0)

    class DiesAfterTwo(FakeCallbacks):
        def heartbeat(self, token: str) -> bool:
            self.heartbeats.append(token)
            return len(self.heartbeats) <= 2

    callbacks = DiesAfterTwo()
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        job.options = {**job.options, "batch_size": 100}
    fate = batch_messages.handle_batch_message(
        message(job_id, batch_id, "tok"), receive_count=1, store=store(), callbacks=callbacks
    )
    assert fate == "stale" and len(callbacks.heartbeats) == 3
    assert not callbacks.ok and not callbacks.failed
    assert written_keys(s3) == set(), "the stopped attempt deleted what it wrote"


def test_the_batch_timeout_counts_from_pickup(s3: Any) -> None:
    """The message says 20 s; it waited in the queue far longer (irrelevant), and the
    attempt itself is what is timed: a budget of 0 s fails at the first chunk."""
    _, job_id, batch_id = one_batch_job(s3)
    callbacks = FakeCallbacks()
    fate = batch_messages.handle_batch_message(
        message(job_id, batch_id, "tok", timeout=0.0), receive_count=1, store=store(),
        callbacks=callbacks,
    )
    assert fate == "retry" and "BatchTimeout" in callbacks.failed[0][2]
    assert written_keys(s3) == set()
    fate = batch_messages.handle_batch_message(
        message(job_id, batch_id, "tok2", timeout=20.0), receive_count=1, store=store(),
        callbacks=callbacks,
    )
    assert fate == "succeeded" and callbacks.ok[0][1]["records_written"] == 2000


def test_run_batch_raises_batch_timeout_past_its_budget(s3: Any) -> None:
    _, job_id, batch_id = one_batch_job(s3)
    with pytest.raises(BatchTimeout, match="budget"):
        worker.run_batch(job_id, batch_id, store=store(), timeout_seconds=0.0)
    assert written_keys(s3) == set()


def test_a_malformed_message_is_dropped_with_a_reason(s3: Any, caplog: Any) -> None:
    fate = batch_messages.handle_batch_message(
        '{"job_id": 1}', receive_count=4, store=store(), callbacks=FakeCallbacks()
    )
    assert fate == "dropped" and "malformed batch message" in caplog.text


# --- sources pinned at event time ----------------------------------------------------------


def test_an_object_overwritten_after_its_event_is_not_ingested_twice(s3: Any) -> None:
    """Protection: the job of an upload event ingests the object that event named (its
    ETag); the overwrite's own event is a new job. Before, both jobs read the current
    object: 200 rows committed, 100 distinct, the first version lost silently."""
    from datalake.errors import SourceChanged
    from datalake.services import sources

    def upload(first: int) -> str:
        body = "id,ts,carrier,delay\n" + "".join(
            f"{i},2013-01-01 00:00:00,AA,1\n" for i in range(first, first + 100))
        return str(s3.put_object(Bucket="landing", Key="drop/a.csv", Body=body.encode())["ETag"])

    with session_scope() as session:
        table = tables.create_table(session, name="pinned")
        source = sources.create_source(session, name="drop", table_id=table.id,
                                       bucket="landing", prefix="drop/")
        table_id = table.id
    started = []
    for first, seq in ((0, "01"), (100, "02")):  # two uploads, two events, in order
        etag = upload(first)
        with session_scope() as session:
            src = session.get(DataSource, source.id)
            assert src is not None
            job, created = jobs.job_for_object(session, source=src, bucket="landing",
                                               key="drop/a.csv", etag=etag, sequencer=seq)
            assert created
            jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
            started.append(job.id)
    with pytest.raises(SourceChanged, match="replaced after the upload event"):
        plan_job(started[0], store=store())
    with session_scope() as session:
        jobs.abort_job(session, started[0], error="SourceChanged", store=store())
    plan = plan_job(started[1], store=store())
    for item in plan["batches"]:
        worker.run_batch(started[1], item["batch_id"], store=store())
    jobs.publish_job(started[1], store=store())
    ids = read_committed(s3, table_id).column("id").to_pylist()
    assert sorted(ids) == list(range(100, 200))


def test_a_cancel_whose_cleanup_fails_is_finished_by_the_schedule(s3: Any) -> None:
    """On AWS a stopped execution runs no Abort: when the cancel's own clean-up fails
    (S3 refuses the deletes), the optimize schedule's pass finishes it."""
    from datalake.aws.s3 import S3ObjectStore

    class RefusesDeletes(S3ObjectStore):
        def delete(self, bucket: str, keys: list[str]) -> None:
            raise ConnectionError("s3 delete_objects: connection reset")

    _, job_id, batch_id = one_batch_job(s3)
    worker.run_batch(job_id, batch_id, store=store())
    with session_scope() as session:
        jobs.cancel_job(session, job_id, orchestrator=None, store=RefusesDeletes())
    with session_scope() as session:
        assert jobs.get_job(session, job_id).status == "CANCELLED"
    assert [k for k in lake_keys(s3) if job_id in k], "the failed clean-up left objects"
    assert jobs.clean_up_finished_jobs(store()) == [job_id]
    assert [k for k in lake_keys(s3) if job_id in k] == []
    with session_scope() as session:
        assert session.scalar(select(func.count()).where(DataFile.job_id == job_id)) == 0
    assert jobs.clean_up_finished_jobs(store()) == []
