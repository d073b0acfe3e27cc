"""Compaction on moto S3 and a real catalog (SQLite and Postgres).

Two kinds of fixtures: the in-process ingestion pipeline (a small ``split_size_mb`` leaves
many small files per partition, as real splits do), and hand-written Parquet files with
their DataFile rows, for the cases the pipeline cannot produce on demand (schema versions,
row-group sizes, races with other writers).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select, update

from datalake.aws import clients
from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, DataLakePartition, utcnow
from datalake.catalog.snapshots import begin_change
from datalake.config import get_settings
from datalake.domain.schema import Schema
from datalake.engine.arrow_schema import FIELD_ID_KEY, to_arrow_schema
from datalake.engine.writer import column_stats
from datalake.services import compaction, jobs, partitions, tables
from datalake.services.compaction import MIN_ROW_GROUP_ROWS, compact_table
from tests.fakes import LAKE, LANDING, FakeOrchestrator

ROOT = Path(__file__).resolve().parents[2]

CSV = "id,ts,carrier,delay\n" + "".join(
    f"{i},2013-01-{1 + i % 5:02d} {i % 24:02d}:00:00,{'AA' if i % 2 else 'UA'},"
    f"{i % 7 if i % 11 else 'NA'}\n"
    for i in range(3000)
)


@dataclass
class FakeContext:
    function_name: str = "optimize"
    memory_limit_in_mb: int = 1769
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:optimize"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def store() -> Any:
    from datalake.aws.s3 import S3ObjectStore

    return S3ObjectStore(clients.client("s3"))


# ------------------------------------------------------------------------- helpers


def ingest(s3: Any, *, name: str = "flights", body: str = CSV, **opts: Any) -> str:
    """Run a whole job in-process (Plan, every batch, Commit); return the table id."""
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch

    key = f"in/{name}.csv"
    s3.put_object(Bucket=LANDING, Key=key, Body=body.encode())
    with session_scope() as session:
        table = tables.create_table(
            session, name=name, partitioning=[{"column": "ts", "transform": "day"}]
        )
        job = jobs.create_job(
            session, table_id=table.id, sources=[f"s3://{LANDING}/{key}"], options=opts or None
        )
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        table_id, job_id = table.id, job.id
    plan = plan_job(job_id, store=store())
    for item in plan["batches"]:
        run_batch(job_id, item["batch_id"], store=store())
    with session_scope() as session:
        jobs.commit_job(session, job_id)
    return table_id


def committed(table_id: str) -> list[DataFile]:
    with session_scope() as session:
        return tables.committed_files(session, table_id, limit=10_000)[0]


def read_rows(s3: Any, table_id: str) -> pa.Table:
    parts = [
        pq.read_table(io.BytesIO(s3.get_object(Bucket=f.bucket, Key=f.key)["Body"].read()))
        for f in committed(table_id)
    ]
    data = pa.concat_tables(parts, promote_options="permissive")
    return data.sort_by([(n, "ascending") for n in data.column_names])


def parquet_keys(s3: Any) -> set[str]:
    paginator = s3.get_paginator("list_objects_v2")
    return {
        o["Key"]
        for page in paginator.paginate(Bucket=LAKE)
        for o in page.get("Contents", [])
        if o["Key"].endswith(".parquet")
    }


def partition_rows(table_id: str) -> dict[str, DataLakePartition]:
    with session_scope() as session:
        items, _ = partitions.list_partitions(session, table_id, limit=1000)
        return {p.path: p for p in items}


def load_handler() -> Any:
    spec = importlib.util.spec_from_file_location(
        "optimize_app", ROOT / "functions" / "optimize" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCHEMA_V1 = Schema.from_json(
    {"fields": [{"id": 1, "name": "id", "type": "long"}, {"id": 2, "name": "k", "type": "string"},
                {"id": 3, "name": "payload", "type": "string"}]}
)
SCHEMA_V2 = Schema.from_json(
    {"fields": [*SCHEMA_V1.to_json()["fields"], {"id": 4, "name": "score", "type": "double"}]}
)


def make_table(name: str = "direct", **fmt: Any) -> tuple[str, str]:
    """A table partitioned by identity(k) with one registered partition k=a."""
    with session_scope() as session:
        table = tables.create_table(
            session,
            name=name,
            schema=SCHEMA_V1.to_json(),
            partitioning=[{"column": "k", "transform": "identity"}],
            format=fmt or None,
        )
        part = partitions.register_partition(session, table_id=table.id, values={"k": "a"})
        return table.id, part.id


def add_file(
    s3: Any,
    table_id: str,
    partition_id: str,
    ids: range,
    *,
    schema: Schema = SCHEMA_V1,
    version: int = 1,
    width: int = 8,
) -> DataFile:
    """Write one Parquet file of rows ``ids`` into partition k=a, recorded COMMITTED."""
    arrow = to_arrow_schema(schema)
    cols: dict[str, Any] = {
        "id": list(ids),
        "k": ["a"] * len(ids),
        "payload": [hashlib.sha1(str(i).encode()).hexdigest()[:width] for i in ids],
    }
    if "score" in arrow.names:
        cols["score"] = [i / 2 for i in ids]
    data = pa.Table.from_pydict(cols, schema=arrow)
    buf = io.BytesIO()
    pq.write_table(data, buf, compression="snappy")
    raw = buf.getvalue()
    key = f"default/direct/k=a/part-{uuid.uuid4().hex[:8]}-0000.parquet"
    s3.put_object(Bucket=LAKE, Key=key, Body=raw)
    with session_scope() as session:
        change = begin_change(session, table_id)  # as a job's Commit does
        row = DataFile(
            table_id=table_id,
            partition_id=partition_id,
            partition_path="k=a",
            partition_values={"k": "a"},
            bucket=LAKE,
            key=key,
            record_count=len(ids),
            size_bytes=len(raw),
            checksum=hashlib.sha256(raw).hexdigest(),
            schema_version=version,
            column_stats=column_stats(pq.read_metadata(io.BytesIO(raw))),
            status="COMMITTED",
            committed_at=change.at,
            committed_seq=change.seq,
        )
        session.add(row)
        session.flush()
        part = session.get(DataLakePartition, partition_id)
        assert part is not None
        partitions.refresh_partition(session, part)
        return row


def footer(s3: Any, key: str) -> pq.FileMetaData:
    return pq.read_metadata(io.BytesIO(s3.get_object(Bucket=LAKE, Key=key)["Body"].read()))


# ------------------------------------------------------------------------- pipeline


def test_compaction_after_a_split_job_keeps_rows_and_lowers_file_count(
    s3: Any, no_retention: None
) -> None:
    table_id = ingest(s3, split_size_mb=0.01, batch_size=200)
    before_files = committed(table_id)
    before_rows = read_rows(s3, table_id)
    before_parts = partition_rows(table_id)
    assert before_rows.num_rows == 3000
    assert all(p.file_count >= 2 for p in before_parts.values()), "the fixture needs small files"
    input_field_ids = [
        f.metadata[FIELD_ID_KEY] for f in footer(s3, before_files[0].key).schema.to_arrow_schema()
    ]

    summary = compact_table(table_id, store=store())

    assert summary.errors == [] and summary.conflicts == 0
    assert summary.partitions_compacted == len(before_parts) == 5
    assert summary.files_before == len(before_files)
    after_files = committed(table_id)
    assert summary.files_after == len(after_files) == 5 < len(before_files)
    assert summary.rows == 3000
    # The same rows, every column.
    assert read_rows(s3, table_id).equals(before_rows)
    # Healthy Parquet, true checksums, the field ids kept, under the same partition folder.
    for f in after_files:
        raw = s3.get_object(Bucket=f.bucket, Key=f.key)["Body"].read()
        assert hashlib.sha256(raw).hexdigest() == f.checksum
        assert len(raw) == f.size_bytes
        md = pq.read_metadata(io.BytesIO(raw))
        assert md.num_rows == f.record_count
        for r in range(md.num_row_groups):
            assert md.row_group(r).num_rows >= min(MIN_ROW_GROUP_ROWS, f.record_count)
        schema = md.schema.to_arrow_schema()
        assert [fl.metadata[FIELD_ID_KEY] for fl in schema] == input_field_ids
        assert f.key.startswith(f"default/flights/{f.partition_path}/part-compact-")
        assert f.job_id is None and f.schema_version == before_files[0].schema_version
    # With no retention the replaced objects and rows are gone; nothing else lies in the lake.
    assert parquet_keys(s3) == {f.key for f in after_files}
    with session_scope() as session:
        statuses = session.scalars(
            select(DataFile.status).where(DataFile.table_id == table_id)
        ).all()
    assert set(statuses) == {"COMMITTED"}
    # Partition roll-ups: same records and stats, one file each.
    after_parts = partition_rows(table_id)
    for path, part in after_parts.items():
        old = before_parts[path]
        assert part.file_count == 1
        assert part.record_count == old.record_count
        assert part.stats == old.stats
        assert part.size_bytes == sum(f.size_bytes for f in after_files if f.partition_path == path)


def test_second_run_changes_nothing(s3: Any) -> None:
    table_id = ingest(s3, split_size_mb=0.01, batch_size=500)
    compact_table(table_id, store=store())
    files = {(f.key, f.checksum) for f in committed(table_id)}
    keys = parquet_keys(s3)
    parts = {p: (x.version, x.file_count) for p, x in partition_rows(table_id).items()}

    again = compact_table(table_id, store=store())

    assert again.partitions_compacted == 0 and again.files_written == 0 and again.rows == 0
    assert again.files_before == again.files_after == len(files)
    assert {(f.key, f.checksum) for f in committed(table_id)} == files
    assert parquet_keys(s3) == keys
    assert {p: (x.version, x.file_count) for p, x in partition_rows(table_id).items()} == parts


def test_new_job_files_are_merged_with_the_compacted_ones(s3: Any) -> None:
    table_id = ingest(s3, split_size_mb=0.01, batch_size=500)
    compact_table(table_id, store=store())
    more = "id,ts,carrier,delay\n" + "".join(
        f"{i},2013-01-01 01:00:00,AA,1\n" for i in range(5000, 5100)
    )
    # A second job into the same table (same partition 2013-01-01).
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch

    s3.put_object(Bucket=LANDING, Key="in/more.csv", Body=more.encode())
    with session_scope() as session:
        job = jobs.create_job(session, table_id=table_id, sources=[f"s3://{LANDING}/in/more.csv"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        job_id = job.id
    for item in plan_job(job_id, store=store())["batches"]:
        run_batch(job_id, item["batch_id"], store=store())
    with session_scope() as session:
        jobs.commit_job(session, job_id)
    assert len(committed(table_id)) == 6
    before = read_rows(s3, table_id)

    summary = compact_table(table_id, store=store())

    assert summary.partitions_compacted == 1 and summary.files_after == 5
    assert read_rows(s3, table_id).equals(before)
    assert partition_rows(table_id)["ts_day=2013-01-01"].record_count == 700


def test_optimize_handler_on_the_sample_events(s3: Any) -> None:
    table_id = ingest(s3, split_size_mb=0.01, batch_size=500)
    other_id = ingest(s3, name="other", split_size_mb=0.01, batch_size=500)
    n_other = len(committed(other_id))
    app = load_handler()
    event = json.loads((ROOT / "events" / "optimize.json").read_text())
    event["table_id"] = table_id

    out = app.lambda_handler(event, FakeContext())

    assert out["status"] == "DONE" and out["table_id"] == table_id
    assert out["partitions_compacted"] == 5 and out["files_after"] == 5
    assert json.loads(json.dumps(out)) == out
    assert len(committed(table_id)) == 5
    assert len(committed(other_id)) == n_other, "only the named table is compacted"

    scheduled = json.loads((ROOT / "events" / "optimize_schedule.json").read_text())
    out = app.lambda_handler(scheduled, FakeContext())
    assert out["status"] == "DONE" and out["tables"] == 2
    assert out["partitions_compacted"] == 5  # only the other table had small files left
    assert len(committed(other_id)) == 5

    missing = app.lambda_handler({**event, "table_id": "nope"}, FakeContext())
    assert missing["status"] == "NOT_FOUND"


def test_one_partition_only(s3: Any) -> None:
    table_id = ingest(s3, split_size_mb=0.01, batch_size=500)
    parts = partition_rows(table_id)
    target = parts["ts_day=2013-01-03"]

    summary = compact_table(table_id, store=store(), partition_id=target.id)

    assert summary.partitions_compacted == 1
    after = partition_rows(table_id)
    assert after["ts_day=2013-01-03"].file_count == 1
    assert after["ts_day=2013-01-01"].file_count == parts["ts_day=2013-01-01"].file_count


# ------------------------------------------------------------------------- direct fixtures


def test_row_groups_and_file_sizes_on_a_larger_partition(s3: Any) -> None:
    table_id, part_id = make_table(target_file_size_mb=1)
    for n in range(40):
        add_file(s3, table_id, part_id, range(n * 4000, (n + 1) * 4000), width=32)
    before = read_rows(s3, table_id)

    summary = compact_table(table_id, store=store())

    files = committed(table_id)
    assert summary.files_written == len(files) >= 2, "a 1 MB target must give several files"
    assert sum(f.record_count for f in files) == 160_000
    for f in files:
        md = footer(s3, f.key)
        assert all(md.row_group(r).num_rows >= MIN_ROW_GROUP_ROWS for r in range(md.num_row_groups))
        assert f.size_bytes > 2**20 // 2
    assert read_rows(s3, table_id).equals(before)
    assert compact_table(table_id, store=store()).files_written == 0


def test_only_files_of_one_schema_version_are_merged(s3: Any) -> None:
    table_id, part_id = make_table()
    for n in range(3):
        add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10))
    for n in range(3, 6):
        add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10), schema=SCHEMA_V2, version=2)
    lone = add_file(s3, table_id, part_id, range(100, 110), schema=SCHEMA_V2, version=3)

    summary = compact_table(table_id, store=store())

    files = committed(table_id)
    assert summary.files_replaced == 6 and summary.files_written == 2
    assert sorted(f.schema_version or 0 for f in files) == [1, 2, 3]
    assert lone.key in {f.key for f in files}
    for f in files:
        names = footer(s3, f.key).schema.to_arrow_schema().names
        assert names == (["id", "k", "payload"] if f.schema_version == 1
                         else ["id", "k", "payload", "score"])
    assert sorted(read_rows(s3, table_id).column("id").to_pylist()) == [
        *range(60), *range(100, 110)
    ]


def test_lost_race_commits_nothing_and_removes_its_objects(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    table_id, part_id = make_table()
    rows = [add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10)) for n in range(4)]
    real = compaction._rewrite

    def rival_wins(unit: Any, st: Any, info: Any) -> Any:
        out = real(unit, st, info)
        with session_scope() as session:  # another run replaced one input meanwhile
            session.execute(
                update(DataFile).where(DataFile.id == rows[0].id).values(status="REPLACED")
            )
        return out

    monkeypatch.setattr(compaction, "_rewrite", rival_wins)
    summary = compact_table(table_id, store=store())

    assert summary.conflicts == 1 and summary.files_written == 0 and summary.errors == []
    assert {f.key for f in committed(table_id)} == {r.key for r in rows[1:]}
    assert not [k for k in parquet_keys(s3) if "part-compact-" in k]


def test_a_job_committing_meanwhile_is_not_lost(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    table_id, part_id = make_table()
    for n in range(3):
        add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10))
    real = compaction._rewrite
    late: list[DataFile] = []

    def job_commits(unit: Any, st: Any, info: Any) -> Any:
        out = real(unit, st, info)
        if not late:  # an ingestion commit lands in the partition before ours
            late.append(add_file(s3, table_id, part_id, range(500, 520)))
        return out

    monkeypatch.setattr(compaction, "_rewrite", job_commits)
    summary = compact_table(table_id, store=store())

    assert summary.files_replaced == 3 and summary.files_written == 1
    files = committed(table_id)
    assert late[0].key in {f.key for f in files} and len(files) == 2
    part = partition_rows(table_id)["k=a"]
    assert part.record_count == 50 and part.file_count == 2
    assert part.stats["id"]["max"] == 519
    ids = sorted(read_rows(s3, table_id).column("id").to_pylist())
    assert ids == [*range(30), *range(500, 520)]


def test_unreadable_input_is_reported_and_changes_nothing(s3: Any) -> None:
    table_id, part_id = make_table()
    rows = [add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10)) for n in range(3)]
    s3.delete_object(Bucket=LAKE, Key=rows[2].key)

    summary = compact_table(table_id, store=store())

    assert summary.errors and summary.files_written == 0
    assert {f.key for f in committed(table_id)} == {r.key for r in rows}
    assert not [k for k in parquet_keys(s3) if "part-compact-" in k]


def test_a_crash_after_commit_is_swept_by_the_next_run(
    s3: Any, monkeypatch: pytest.MonkeyPatch, no_retention: None
) -> None:
    table_id, part_id = make_table()
    rows = [add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10)) for n in range(3)]

    def crash(*_: Any) -> None:
        raise RuntimeError("Lambda timed out")

    monkeypatch.setattr(compaction, "delete_replaced", crash)
    first = compact_table(table_id, store=store())
    assert first.files_written == 1
    assert all(r.key in parquet_keys(s3) for r in rows), "the crash left the old objects"
    monkeypatch.undo()

    second = compact_table(table_id, store=store())

    assert second.swept == 3 and second.files_written == 0
    assert parquet_keys(s3) == {f.key for f in committed(table_id)}
    with session_scope() as session:
        assert not session.scalars(select(DataFile).where(DataFile.status == "REPLACED")).all()


def test_bad_arguments(s3: Any) -> None:
    from datalake.errors import InvalidInput, NotFound

    table_id, _ = make_table()
    with pytest.raises(NotFound):
        compact_table("nope", store=store())
    with pytest.raises(InvalidInput):
        compact_table(table_id, store=store(), target_file_size_mb=0)
    _, other_part = make_table(name="other")
    with pytest.raises(NotFound):
        compact_table(table_id, store=store(), partition_id=other_part)


def test_commit_retries_when_the_partition_row_moves(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datalake.errors import CommitConflict

    table_id, part_id = make_table()
    for n in range(3):
        add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10))
    real = compaction.refresh_partition
    calls: list[int] = []

    def flaky(session: Any, part: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise CommitConflict("partition changed concurrently")
        return real(session, part)

    monkeypatch.setattr(compaction, "refresh_partition", flaky)
    summary = compact_table(table_id, store=store())

    assert len(calls) == 2 and summary.files_written == 1 and summary.conflicts == 0
    assert len(committed(table_id)) == 1
    assert partition_rows(table_id)["k=a"].file_count == 1


def test_large_partitions_are_merged_in_bounded_chunks(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    table_id, part_id = make_table()
    rows = [add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10)) for n in range(7)]
    cap = max(r.size_bytes for r in rows) * 3
    monkeypatch.setattr(compaction, "MAX_MERGE_INPUT_BYTES", cap)

    summary = compact_table(table_id, store=store())

    # Chunks of about three files; a lone last file joins the chunk before it.
    assert summary.files_replaced == 7 and 2 <= summary.files_written <= 3
    assert all(f.record_count >= 20 for f in committed(table_id))
    assert sorted(read_rows(s3, table_id).column("id").to_pylist()) == list(range(70))


def test_replaced_files_stay_readable_for_the_retention_period(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    table_id = ingest(s3, split_size_mb=0.02)
    before = {f.key for f in committed(table_id)}
    rows = read_rows(s3, table_id)
    monkeypatch.setenv("DATALAKE_REPLACED_FILE_RETENTION_SECONDS", "600")
    get_settings.cache_clear()
    summary = compact_table(table_id, store=store())
    assert summary.files_replaced > 0
    after = {f.key for f in committed(table_id)}
    assert len(after) < len(before)
    # A reader that listed the files before the swap can still read every one of them.
    assert before <= parquet_keys(s3)
    with session_scope() as session:
        replaced = session.scalars(
            select(DataFile).where(DataFile.table_id == table_id, DataFile.status == "REPLACED")
        ).all()
        assert replaced and all(f.replaced_at is not None for f in replaced)
    # Within the period a new run sweeps nothing; once it has passed, the next run does.
    assert compact_table(table_id, store=store()).swept == 0
    with session_scope() as session:
        session.execute(
            update(DataFile)
            .where(DataFile.table_id == table_id, DataFile.status == "REPLACED")
            .values(replaced_at=utcnow() - timedelta(seconds=601))
        )
    assert compact_table(table_id, store=store()).swept == len(before - after)
    assert parquet_keys(s3) == after
    assert read_rows(s3, table_id).equals(rows)
    get_settings.cache_clear()


# ------------------------------------------------------------------------- checksums


def test_a_tampered_input_is_not_merged_and_leaves_the_table(s3: Any) -> None:
    """Protection: compaction checks every input against its checksum. The tampered
    object holds valid Parquet with other rows: merged, they would become committed."""
    table_id, part_id = make_table()
    rows = [add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10)) for n in range(3)]
    forged = io.BytesIO()
    pq.write_table(pq.read_table(io.BytesIO(
        s3.get_object(Bucket=LAKE, Key=rows[1].key)["Body"].read())).slice(0, 3), forged)
    s3.put_object(Bucket=LAKE, Key=rows[1].key, Body=forged.getvalue())

    summary = compact_table(table_id, store=store())

    assert summary.corrupt == 1 and summary.errors == []
    assert sorted(read_rows(s3, table_id).column("id").to_pylist()) == [
        *range(0, 10), *range(20, 30)]
    with session_scope() as session:
        tampered = session.get(DataFile, rows[1].id)
        assert tampered is not None and tampered.status == "CORRUPT"
    assert partition_rows(table_id)["k=a"].corrupt_files == 1


def test_the_optimize_schedule_verifies_checksums(s3: Any) -> None:
    table_id = ingest(s3, split_size_mb=0.01, batch_size=500)
    victim = committed(table_id)[0]
    s3.put_object(Bucket=LAKE, Key=victim.key, Body=b"not what was written")
    app = load_handler()
    scheduled = json.loads((ROOT / "events" / "optimize_schedule.json").read_text())

    out = app.lambda_handler(scheduled, FakeContext())

    assert out["status"] == "DONE"
    with session_scope() as session:
        row = session.get(DataFile, victim.id)
        assert row is not None and row.status == "CORRUPT"
        assert row.job_id and jobs.get_job(session, row.job_id).corrupted_at is not None
    assert victim.key not in {f.key for f in committed(table_id)}


class ThreadedRequester:
    """Runs the optimize handler on each request a moment later, as Lambda's asynchronous
    invocation does."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def request(self, payload: dict[str, Any]) -> str:
        def run() -> None:
            time.sleep(0.3)
            load_handler().lambda_handler(payload, FakeContext())

        self.threads.append(threading.Thread(target=run))
        self.threads[-1].start()
        return f"req-{len(self.threads)}"


def test_optimize_wait_follows_the_run_until_it_has_finished(
    s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from starlette.testclient import TestClient

    from datalake.cli import app as cli_app
    from datalake.tokens import make_token
    from datalake_api.main import create_app
    from datalake_api.routes import partitions as partition_routes
    from tests.fakes import cli_through_app

    table_id = ingest(s3, split_size_mb=0.01, batch_size=500)
    before = len(committed(table_id))
    requester = ThreadedRequester()
    app = create_app()
    app.dependency_overrides[partition_routes.get_compaction_requester] = lambda: requester
    monkeypatch.setattr(cli_app, "OPTIMIZE_POLL_S", 0.05)
    writer = {"Authorization": "Bearer " + make_token("tester", ["writer"])}
    with TestClient(app, raise_server_exceptions=False) as client:
        cli_through_app(client, monkeypatch, writer)
        assert cli_app.run(["optimize", table_id, "--wait", "--json"]) == 0
        for t in requester.threads:
            t.join()
        out = capsys.readouterr().out  # the handler's JSON log lines share stdout here
        run = json.JSONDecoder().raw_decode(out[out.index("{\n  "):])[0]
        assert run["status"] == "DONE" and run["files_before"] == before
        assert run["files_after"] == len(committed(table_id)) < before
        # The run stays readable by its id; an unknown id is a 404.
        again = client.get(f"/api/v1/partitions/table/{table_id}/optimize/{run['run_id']}",
                           headers=writer)
        assert again.status_code == 200 and again.json()["status"] == "DONE"
        unknown = client.get(f"/api/v1/partitions/table/{table_id}/optimize/nope",
                             headers=writer)
        assert unknown.status_code == 404
