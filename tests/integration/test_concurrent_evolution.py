"""Two jobs evolve one table at the same moment, on a real Postgres catalog.

Each job's files add a different column. Both plans read the same table version before
either records its new version (a barrier in front of ``record_version`` forces it); the
loser's optimistic ``UPDATE ... WHERE version = :expected`` matches no row, it gets
``CommitConflict`` and its retried Plan (the state machine's Retry, done here by
``plan_as_retried``) re-plans on the winner's version. Both jobs succeed,
both columns exist, and version numbers are strictly increasing without duplicates.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from datalake.catalog import db
from datalake.catalog.db import session_scope
from datalake.catalog.models import DataLakeSchema, SchemaChange
from datalake.config import get_settings
from datalake.engine.store import LocalObjectStore
from datalake.errors import CommitConflict
from datalake.services import jobs, planning, reading, schemas, tables
from datalake.services.worker import run_batch
from tests.fakes import LANDING, FakeOrchestrator

pytestmark = pytest.mark.postgres

BASE = {"fields": [{"name": "id", "type": "long"}, {"name": "ts", "type": "timestamp"}]}


@pytest.fixture
def catalog(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("DATALAKE_LAKE_BUCKET", "lake")
    # Schema races, not Iceberg: Commit ends a job in its catalog transaction.
    monkeypatch.setenv("DATALAKE_ICEBERG_CATALOG", "none")
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    yield postgres_url
    db.get_engine().dispose()
    db.get_engine.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "s3")


def plan_as_retried(job_id: str, store: LocalObjectStore) -> dict[str, Any]:
    """Plan as the state machine runs it: a CommitConflict runs the Plan task again
    (its Retry lists the error; MaxAttempts 6)."""
    for _ in range(5):
        try:
            return planning.plan_job(job_id, store=store)
        except CommitConflict:
            continue
    return planning.plan_job(job_id, store=store)


def start_job(store: LocalObjectStore, table_id: str, key: str, body: str) -> str:
    store.put_bytes(LANDING, key, body.encode())
    with session_scope() as session:
        job = jobs.create_job(session, table_id=table_id, sources=[f"s3://{LANDING}/{key}"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        return job.id


def test_concurrent_jobs_adding_columns_both_succeed(
    catalog: str, store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope() as session:
        table = tables.create_table(
            session,
            name=f"race_{uuid.uuid4().hex[:8]}",
            schema=BASE,
        )
        table_id = table.id
    job_a = start_job(store, table_id, "a.csv", "id,ts,color\n1,2024-01-01 00:00:00,red\n")
    job_b = start_job(store, table_id, "b.csv", "id,ts,size\n2,2024-01-02 00:00:00,42\n")

    barrier = threading.Barrier(2, timeout=60)
    calls: Counter[str] = Counter()
    real = planning.record_version

    def racing(*args: Any, **kwargs: Any) -> DataLakeSchema:
        me = threading.current_thread().name
        calls[me] += 1
        if calls[me] == 1:
            barrier.wait()  # both plans have read the same table version by now
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "record_version", racing)
    results: dict[str, Any] = {}

    def plan(job_id: str) -> None:
        try:
            results[job_id] = plan_as_retried(job_id, store)
        except BaseException as e:  # reported by the assertion below
            results[job_id] = e

    threads = [threading.Thread(target=plan, args=(j,), name=j) for j in (job_a, job_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    errors = {j: r for j, r in results.items() if isinstance(r, BaseException)}
    assert not errors, errors
    # One plan won at once; the other conflicted and re-planned: three attempts in all.
    assert sorted(calls.values()) == [1, 2]

    for job_id in (job_a, job_b):
        for item in results[job_id]["batches"]:
            run_batch(job_id, item["batch_id"], store=store)
        with session_scope() as session:  # Iceberg is off here: Commit ends the job
            jobs.commit_job(session, job_id)

    with session_scope() as session:
        assert {jobs.get_job(session, j).status for j in (job_a, job_b)} == {"SUCCEEDED"}
        planned = sorted(jobs.get_job(session, j).schema_version or 0 for j in (job_a, job_b))
        assert planned == [2, 3]
        rows = schemas.history(session, table_id)
        numbers = [r.version for r in rows]
        assert numbers == [1, 2, 3]
        duplicates = session.scalar(
            select(func.count())
            .select_from(DataLakeSchema)
            .where(DataLakeSchema.table_id == table_id)
            .group_by(DataLakeSchema.version)
            .having(func.count() > 1)
        )
        assert duplicates is None
        assert [r.parent_version for r in rows] == [None, 1, 2]
        table = tables.get_table(session, table_id)
        assert table.current_schema_version == 3
        current = schemas.schema_at(session, table_id, 3)
        assert current.names[:2] == ["id", "ts"]
        assert sorted(current.names[2:]) == ["color", "size"]
        assert table.last_column_id == 4
        changes = session.scalars(select(SchemaChange).where(SchemaChange.table_id == table_id))
        added = {(c.schema_version, c.change_type) for c in changes}
        assert added == {(2, "ADD_COLUMN"), (3, "ADD_COLUMN")}

    data = reading.read_table(table_id, store=store).sort_by("id")
    assert data.column_names[:2] == ["id", "ts"]
    by_id = {r["id"]: r for r in data.to_pylist()}
    assert by_id[1]["color"] == "red" and by_id[1]["size"] is None
    assert by_id[2]["size"] == 42 and by_id[2]["color"] is None
