"""The whole job lifecycle in-process: moto S3, a real catalog, the real engine.

Step Functions is replaced by calling Plan, the batch worker and Commit in order, as
the state machine does; the state machine itself runs in the LocalStack e2e tests.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datalake.catalog.db import session_scope
from datalake.errors import Conflict
from datalake.services import jobs, tables
from datalake.services.jobs import JobCancelled
from tests.fakes import LAKE, LANDING, FakeOrchestrator

CSV = "id,ts,carrier,delay\n" + "".join(
    f"{i},2013-01-{1 + i % 5:02d} {i % 24:02d}:00:00,"
    f"{'AA' if i % 2 else 'UA'},{i % 7 if i % 11 else 'NA'}\n"
    for i in range(2000)
)


def store() -> Any:
    from datalake.aws.s3 import S3ObjectStore

    return S3ObjectStore()


def new_job(s3: Any, key: str = "in/flights.csv", body: str = CSV, *, table_name: str = "t",
            **opts: Any) -> tuple[str, str]:
    s3.put_object(Bucket=LANDING, Key=key, Body=body.encode())
    with session_scope() as session:
        table = tables.create_table(
            session, name=table_name, partitioning=[{"column": "ts", "transform": "day"}]
        )
        job = jobs.create_job(
            session, table_id=table.id, sources=[f"s3://{LANDING}/{key}"], options=opts or None
        )
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        return table.id, job.id


def run_all(job_id: str) -> dict[str, Any]:
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch

    plan = plan_job(job_id, store=store())
    for item in plan["batches"]:
        run_batch(job_id, item["batch_id"], store=store())
    return plan


def read_committed(s3: Any, table_id: str) -> pa.Table:
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
        keys = [(f.bucket, f.key) for f in files]
    parts = [
        pq.read_table(io.BytesIO(s3.get_object(Bucket=b, Key=k)["Body"].read())) for b, k in keys
    ]
    return pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})


def test_job_end_to_end_counts_reconcile(s3: Any) -> None:
    table_id, job_id = new_job(s3, split_size_mb=0.01, batch_size=100)
    plan = run_all(job_id)
    assert plan["batch_count"] > 1, "a 0.01 MB split size must cut the file into several splits"
    jobs.publish_job(job_id, store=None)  # Commit: the catalog, then Iceberg
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        assert job.status == "SUCCEEDED"
        assert job.records_read == 2000
        assert job.records_written + job.records_rejected == job.records_read
        assert job.records_written == 2000
        table = tables.get_table(session, table_id)
        assert table.current_schema_version == 1  # inferred from the file
        files, total = tables.committed_files(session, table_id)
        assert total == len(files) > 0
        assert {tuple(f.partition_values) for f in files} == {("ts_day",)}
    data = read_committed(s3, table_id)
    assert data.num_rows == 2000
    assert sorted(data.column("id").to_pylist()) == list(range(2000))


def test_rerun_of_batches_and_commit_adds_nothing(s3: Any) -> None:
    from datalake.catalog.models import IngestionBatch
    from datalake.services.worker import run_batch

    table_id, job_id = new_job(s3, split_size_mb=0.01)
    plan = run_all(job_id)
    # A redelivered message for a finished batch, and a retried attempt of another.
    first = plan["batches"][0]["batch_id"]
    run_batch(job_id, first, store=store())
    from sqlalchemy import delete, select

    from datalake.catalog.models import DataFile

    second = plan["batches"][1]["batch_id"]
    with session_scope() as session:
        b = session.get(IngestionBatch, second)
        assert b is not None
        # As if the worker died after uploading, before recording: objects, no rows.
        orphans = set(session.scalars(select(DataFile.key).where(DataFile.batch_id == second)))
        session.execute(delete(DataFile).where(DataFile.batch_id == second))
        b.status = "RUNNING"
    run_batch(job_id, second, store=store())
    # Plan re-run by a Step Functions retry returns the same batches.
    from datalake.services.planning import plan_job

    assert plan_job(job_id, store=store())["batches"] == plan["batches"]
    for _ in range(2):
        jobs.publish_job(job_id, store=store())
    data = read_committed(s3, table_id)
    lake = {o["Key"] for o in s3.list_objects_v2(Bucket=LAKE).get("Contents", [])}
    assert orphans and not orphans & lake, "the dead attempt's objects are swept at Commit"
    assert data.num_rows == 2000
    assert len(set(data.column("id").to_pylist())) == 2000
    with session_scope() as session:
        parts = tables.get_table(session, table_id)
        from sqlalchemy import func, select

        from datalake.catalog.models import DataLakePartition

        total = session.scalar(
            select(func.sum(DataLakePartition.record_count)).where(
                DataLakePartition.table_id == parts.id
            )
        )
        assert total == 2000


def test_cancelled_job_commits_nothing_and_leaves_no_objects(s3: Any) -> None:
    table_id, job_id = new_job(s3, split_size_mb=0.01)
    run_all(job_id)
    before = s3.list_objects_v2(Bucket=LAKE).get("KeyCount", 0)
    assert before > 0

    from datalake.aws.s3 import S3ObjectStore

    with session_scope() as session:
        jobs.cancel_job(session, job_id, orchestrator=None, store=S3ObjectStore())
    with session_scope() as session, pytest.raises(JobCancelled):
        jobs.commit_job(session, job_id)
    with session_scope() as session:
        assert tables.committed_files(session, table_id)[1] == 0
        with pytest.raises(Conflict):
            jobs.cancel_job(session, job_id, orchestrator=None, store=None)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=LAKE).get("Contents", [])]
    assert not [k for k in keys if k.endswith(".parquet")]


def test_worker_refuses_a_cancelled_job(s3: Any) -> None:
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch

    _, job_id = new_job(s3)
    plan = plan_job(job_id, store=store())
    with session_scope() as session:
        jobs.cancel_job(session, job_id, orchestrator=None, store=None)
    with pytest.raises(JobCancelled):
        run_batch(job_id, plan["batches"][0]["batch_id"], store=store())


def test_missing_source_fails_planning_clearly(s3: Any) -> None:
    from datalake.errors import InvalidInput
    from datalake.services.planning import plan_job

    _, job_id = new_job(s3)
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        job.sources = [f"s3://{LANDING}/nothing/here.csv"]
    with pytest.raises(InvalidInput, match="no object"):
        plan_job(job_id, store=store())


def test_plan_reads_no_file_schema_when_the_table_does_not_evolve(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datalake.services import planning

    def no_sampling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a frozen table's files need no schema sampling at Plan")

    s3.put_object(Bucket=LANDING, Key="frozen/a.csv", Body=b"id\n1\n2\n")
    with session_scope() as session:
        table = tables.create_table(
            session,
            name="frozen",
            schema={"fields": [{"name": "id", "type": "long"}]},
            schema_policy="freeze",
        )
        job = jobs.create_job(session, table_id=table.id, sources=[f"s3://{LANDING}/frozen/"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        job_id = job.id
    monkeypatch.setattr(planning, "sample_schema", no_sampling)
    assert planning.plan_job(job_id, store=store())["batch_count"] == 1


def test_many_small_files_share_batches_and_files(s3: Any) -> None:
    keys = [f"many/{k:03d}.csv" for k in range(60)]
    for k, key in enumerate(keys):
        body = "id,ts,carrier,delay\n" + "".join(
            f"{k * 10 + i},2013-01-0{1 + i % 2} 00:00:00,AA,{i}\n" for i in range(10))
        s3.put_object(Bucket=LANDING, Key=key, Body=body.encode())
    with session_scope() as session:
        table = tables.create_table(
            session, name="many", partitioning=[{"column": "ts", "transform": "day"}])
        job = jobs.create_job(session, table_id=table.id, sources=[f"s3://{LANDING}/many/"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        table_id, job_id = table.id, job.id
    plan = run_all(job_id)
    assert plan["batch_count"] == 1  # 60 objects of ~300 bytes: one worker run
    with session_scope() as session:
        jobs.commit_job(session, job_id)
        job = jobs.get_job(session, job_id)
        assert (job.records_read, job.records_written, job.batches_total) == (600, 600, 1)
        files, _ = tables.committed_files(session, table_id)
        assert len(files) == 2  # one per day, not one per object and day
    ids = read_committed(s3, table_id)["id"].to_pylist()
    assert sorted(ids) == list(range(600))
