"""Schema evolution end to end: moto S3, a real catalog (SQLite and Postgres), the real engine.

Five files land in one table in sequence, each drifting from the one before:

1. the base columns (Parquet, so ``int`` and ``float`` are observed exactly);
2. plus a new column ``city`` (Parquet);
3. ``id`` now holds values above 2^31, observed as ``long`` (Avro);
4. ``score`` observed as ``double`` (CSV: inference gives double);
5. ``name`` missing, and ``"abc"`` in the ``id`` column (CSV).

The table is created with an explicit schema (``id: int, score: float``) because CSV
inference would observe ``long``/``double`` from the first file. The same files are then
ingested under each ``schema_policy`` with the outcomes ``docs/schema-evolution.md``
documents, and a rollback through the API is ingested into and read back.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from datalake.catalog.db import session_scope
from datalake.catalog.models import AuditEvent, IngestionBatch, SchemaChange
from datalake.cli.query import to_duckdb
from datalake.errors import DatalakeError, SchemaMismatch
from datalake.services import jobs, reading, schemas, tables
from datalake.tokens import make_token
from datalake_api.main import create_app
from tests.fakes import LAKE, LANDING, FakeOrchestrator

API = "/api/v1"
ADMIN = {"Authorization": "Bearer " + make_token("evolver", ["admin"])}
BASE_SCHEMA = {
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "float"},
        {"name": "ts", "type": "timestamp"},
    ]
}


def ts(day: int, hour: int = 10) -> datetime:
    return datetime(2024, 1, day, hour, 0, 0)


def parquet(columns: dict[str, pa.Array]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def avro(schema: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    fastavro.writer(sink, fastavro.parse_schema(schema), records)
    return sink.getvalue()


F1 = parquet({
    "id": pa.array([1, 2], pa.int32()),
    "name": pa.array(["a", "b"]),
    "score": pa.array([1.5, 2.5], pa.float32()),
    "ts": pa.array([ts(1), ts(1, 11)], pa.timestamp("us")),
})
F2 = parquet({
    "id": pa.array([3, 4], pa.int32()),
    "name": pa.array(["c", "d"]),
    "score": pa.array([3.5, 4.5], pa.float32()),
    "ts": pa.array([ts(2), ts(2)], pa.timestamp("us")),
    "city": pa.array(["Oslo", "Rome"]),
})
LOCAL_TS = {"type": "long", "logicalType": "local-timestamp-micros"}
F3 = avro(
    {
        "type": "record",
        "name": "row",
        "fields": [
            {"name": "id", "type": ["null", "long"]},
            {"name": "name", "type": ["null", "string"]},
            {"name": "score", "type": ["null", "float"]},
            {"name": "ts", "type": ["null", LOCAL_TS]},
            {"name": "city", "type": ["null", "string"]},
        ],
    },
    [
        {"id": 3_000_000_000, "name": "e", "score": 5.5, "ts": ts(3), "city": "Lima"},
        {"id": 4_000_000_000, "name": "f", "score": 6.5, "ts": ts(3), "city": None},
    ],
)
F4 = b"id,name,score,ts,city\n5,g,0.1,2024-01-04 10:00:00,Oslo\n"
F5 = b"id,score,ts,city\n6,7.25,2024-01-05 10:00:00,Kyiv\nabc,8.5,2024-01-05 11:00:00,Kyiv\n"
FILES = [("f1.parquet", F1), ("f2.parquet", F2), ("f3.avro", F3), ("f4.csv", F4), ("f5.csv", F5)]


@pytest.fixture
def api(s3: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def store() -> Any:
    from datalake.aws.s3 import S3ObjectStore

    return S3ObjectStore()


def make_table(name: str, policy: str) -> str:
    with session_scope() as session:
        table = tables.create_table(
            session,
            name=name,
            schema=BASE_SCHEMA,
            schema_policy=policy,
            partitioning=[{"column": "ts", "transform": "day"}],
        )
        return table.id


def ingest(s3: Any, table_id: str, key: str, body: bytes) -> tuple[str, list[Exception]]:
    """Run a job the way the state machine does; abort it when a batch fails."""
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch

    s3.put_object(Bucket=LANDING, Key=key, Body=body)
    with session_scope() as session:
        job = jobs.create_job(session, table_id=table_id, sources=[f"s3://{LANDING}/{key}"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        job_id = job.id
    plan = plan_job(job_id, store=store())
    errors: list[Exception] = []
    for item in plan["batches"]:
        try:
            run_batch(job_id, item["batch_id"], store=store())
        except DatalakeError as e:
            errors.append(e)
    if errors:
        with session_scope() as session:
            jobs.abort_job(session, job_id, error=str(errors[0]), store=store())
    else:  # Commit: the catalog's transaction, then the Iceberg snapshot
        jobs.publish_job(job_id, store=store())
    return job_id, errors


def job_info(job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        batches = session.scalars(
            select(IngestionBatch).where(IngestionBatch.job_id == job_id)
        ).all()
        return {
            "status": job.status,
            "schema_version": job.schema_version,
            "read": job.records_read,
            "written": job.records_written,
            "rejected": job.records_rejected,
            "discarded": sorted({c for b in batches for c in b.discarded_columns}),
            "errors": [b.error for b in batches if b.error],
            "quarantine": [b.quarantine_key for b in batches if b.quarantine_key],
        }


def version_changes(table_id: str) -> dict[int, set[tuple[str, str, str | None, str | None]]]:
    with session_scope() as session:
        rows = session.scalars(select(SchemaChange).where(SchemaChange.table_id == table_id))
        out: dict[int, set[tuple[str, str, str | None, str | None]]] = {}
        for r in rows:
            out.setdefault(r.schema_version, set()).add(
                (r.change_type, r.column_name, r.from_value, r.to_value)
            )
        return out


def versions(table_id: str) -> list[tuple[int, str, str | None]]:
    with session_scope() as session:
        return [(v.version, v.source, v.job_id) for v in schemas.history(session, table_id)]


def read(table_id: str, **kwargs: Any) -> pa.Table:
    return reading.read_table(table_id, store=store(), **kwargs).sort_by("id")


def expected(rows: list[tuple[Any, ...]], types: dict[str, pa.DataType]) -> pa.Table:
    names = list(types)
    cols = {n: pa.array([r[i] for r in rows], types[n]) for i, n in enumerate(names)}
    return pa.table(cols).sort_by("id")


EVOLVED = {
    "id": pa.int64(),
    "name": pa.string(),
    "score": pa.float64(),
    "ts": pa.timestamp("us"),
    "city": pa.string(),
}
EVOLVED_ROWS = [
    (1, "a", 1.5, ts(1), None),
    (2, "b", 2.5, ts(1, 11), None),
    (3, "c", 3.5, ts(2), "Oslo"),
    (4, "d", 4.5, ts(2), "Rome"),
    (3_000_000_000, "e", 5.5, ts(3), "Lima"),
    (4_000_000_000, "f", 6.5, ts(3), None),
    (5, "g", 0.1, ts(4), "Oslo"),
    (6, None, 7.25, ts(5), "Kyiv"),
]


def test_evolve_then_roll_back(s3: Any, api: TestClient) -> None:
    table_id = make_table("evolving", "evolve")
    job_ids = []
    for key, body in FILES:
        job_id, errors = ingest(s3, table_id, f"evolve/{key}", body)
        assert errors == [], (key, errors)
        job_ids.append(job_id)
    infos = [job_info(j) for j in job_ids]
    assert [i["status"] for i in infos] == ["SUCCEEDED"] * 5
    # One version per job that changed something; job 1 and job 5 changed nothing.
    assert [i["schema_version"] for i in infos] == [1, 2, 3, 4, 4]
    assert versions(table_id) == [
        (1, "create", None),
        (2, "ingest", job_ids[1]),
        (3, "ingest", job_ids[2]),
        (4, "ingest", job_ids[3]),
    ]
    assert version_changes(table_id) == {
        2: {("ADD_COLUMN", "city", None, "string")},
        3: {("CHANGE_TYPE", "id", "int", "long")},
        4: {("CHANGE_TYPE", "score", "float", "double")},
    }
    # "abc" cannot be a long: its record is rejected and quarantined, never a null.
    assert (infos[4]["read"], infos[4]["written"], infos[4]["rejected"]) == (2, 1, 1)
    assert sum(i["rejected"] for i in infos[:4]) == 0
    [qkey] = infos[4]["quarantine"]
    bad = [json.loads(line) for line in s3.get_object(Bucket=LAKE, Key=qkey)["Body"].iter_lines()]
    assert [(b["column"], b["value"]) for b in bad] == [("id", "abc")]

    # Every file, read in the current schema by field id: exactly the union.
    data = read(table_id)
    want = expected(EVOLVED_ROWS, EVOLVED)
    assert data.equals(want), data.to_pylist()
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
        assert sorted({f.schema_version for f in files}) == [1, 2, 3, 4]
    picked = read(table_id, columns=["ID", "city"], filter=pc.field("score") > 4)
    assert picked.column_names == ["id", "city"]
    assert picked.to_pylist() == [
        {"id": 4, "city": "Rome"},
        {"id": 6, "city": "Kyiv"},
        {"id": 3_000_000_000, "city": "Lima"},
        {"id": 4_000_000_000, "city": None},
    ]
    relation = to_duckdb(table_id, store=store())
    assert relation.aggregate("count(*), max(id), count(city)").fetchall() == [
        (8, 4_000_000_000, 5)
    ]

    # Roll back to version 1: narrowing long -> int and double -> float breaks BACKWARD.
    v1 = api.get(f"{API}/schema/versions/table/{table_id}", headers=ADMIN).json()["items"][0]
    r = api.post(f"{API}/schema/versions/{v1['id']}/apply", headers=ADMIN)
    assert r.status_code == 409, r.text
    assert {e["change"]["column"] for e in r.json()["detail"]["errors"]} == {"id", "score"}
    r = api.put(f"{API}/tables/{table_id}", json={"compatibility": "NONE"}, headers=ADMIN)
    assert r.status_code == 200
    r = api.post(f"{API}/schema/versions/{v1['id']}/apply", headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 5 and r.json()["source"] == "rollback"
    assert version_changes(table_id)[5] == {
        ("DROP_COLUMN", "city", "string", None),
        ("CHANGE_TYPE", "id", "long", "int"),
        ("CHANGE_TYPE", "score", "double", "float"),
    }
    with session_scope() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "schema.rollback")
        ).all()
        assert [(e.actor, e.details["table_id"], e.details["version"]) for e in events] == [
            ("evolver", table_id, 5)
        ]

    # Ingest again under version 5: exact types, nothing evolves.
    job_id, errors = ingest(s3, table_id, "evolve/f6.parquet", parquet({
        "id": pa.array([7], pa.int32()),
        "name": pa.array(["h"]),
        "score": pa.array([9.5], pa.float32()),
        "ts": pa.array([ts(6)], pa.timestamp("us")),
    }))
    assert errors == []
    info = job_info(job_id)
    assert (info["status"], info["schema_version"], info["written"]) == ("SUCCEEDED", 5, 1)
    assert [v for v, _, _ in versions(table_id)] == [1, 2, 3, 4, 5]

    # The long ids written meanwhile do not fit the rolled-back int: a clear error.
    with pytest.raises(SchemaMismatch, match="id"):
        read(table_id)
    narrow = reading.read_table(table_id, store=store(), columns=["name", "score"])
    assert narrow.schema.field("score").type == pa.float32()
    assert sorted(narrow.column("name").drop_null().to_pylist()) == list("abcdefgh")
    # Projected onto version 4 instead, everything reads, the new row with a null city.
    as_v4 = read(table_id, schema_version=4)
    assert as_v4.equals(expected([*EVOLVED_ROWS, (7, "h", 9.5, ts(6), None)], EVOLVED))

    # Re-applying version 4 brings 'city' back under its original id: old values return.
    v4 = api.get(f"{API}/schema/versions/table/{table_id}", headers=ADMIN).json()["items"][3]
    r = api.post(f"{API}/schema/versions/{v4['id']}/apply", headers=ADMIN)
    assert r.status_code == 201 and r.json()["source"] == "apply"
    assert read(table_id).equals(as_v4)


def test_freeze_rejects_drifting_files(s3: Any) -> None:
    table_id = make_table("frozen", "freeze")
    outcomes = [ingest(s3, table_id, f"freeze/{key}", body) for key, body in FILES]
    infos = [job_info(j) for j, _ in outcomes]
    # Only the first file has exactly the table's columns; every other one has 'city'.
    assert [i["status"] for i in infos] == ["SUCCEEDED"] + ["FAILED"] * 4
    for (_, errors), info in zip(outcomes[1:], infos[1:], strict=True):
        assert len(errors) == 1 and isinstance(errors[0], SchemaMismatch)
        assert "city" in str(errors[0]) and "freeze" in str(errors[0])
        assert "SchemaMismatch" in info["errors"][0]
    assert versions(table_id) == [(1, "create", None)]
    assert version_changes(table_id) == {}
    want = expected(
        [(1, "a", 1.5, ts(1)), (2, "b", 2.5, ts(1, 11))],
        {"id": pa.int32(), "name": pa.string(), "score": pa.float32(), "ts": pa.timestamp("us")},
    )
    assert read(table_id).equals(want)

    # A wider type is not a column difference: values that fit are written, others rejected.
    job_id, errors = ingest(s3, table_id, "freeze/wide.parquet", parquet({
        "id": pa.array([10, 5_000_000_000], pa.int64()),
        "name": pa.array(["w", "x"]),
        "score": pa.array([1.0, 2.0], pa.float32()),
        "ts": pa.array([ts(7), ts(7)], pa.timestamp("us")),
    }))
    assert errors == []
    info = job_info(job_id)
    assert (info["status"], info["written"], info["rejected"]) == ("SUCCEEDED", 1, 1)
    assert versions(table_id) == [(1, "create", None)]
    assert read(table_id).column("id").to_pylist() == [1, 2, 10]


def test_discard_columns_drops_and_counts_unknown_columns(s3: Any) -> None:
    table_id = make_table("discarding", "discard_columns")
    infos = []
    for key, body in FILES:
        job_id, errors = ingest(s3, table_id, f"discard/{key}", body)
        assert errors == []
        infos.append(job_info(job_id))
    assert [i["status"] for i in infos] == ["SUCCEEDED"] * 5
    assert [i["discarded"] for i in infos] == [[], ["city"], ["city"], ["city"], ["city"]]
    assert versions(table_id) == [(1, "create", None)]
    # The schema stays int/float: ids above 2^31 and "abc" are rejected, never nulled.
    assert [i["rejected"] for i in infos] == [0, 0, 2, 0, 1]
    for i in infos:
        assert i["read"] == i["written"] + i["rejected"]
    want = expected(
        [
            (1, "a", 1.5, ts(1)),
            (2, "b", 2.5, ts(1, 11)),
            (3, "c", 3.5, ts(2)),
            (4, "d", 4.5, ts(2)),
            (5, "g", 0.1, ts(4)),
            (6, None, 7.25, ts(5)),
        ],
        {"id": pa.int32(), "name": pa.string(), "score": pa.float32(), "ts": pa.timestamp("us")},
    )
    assert read(table_id).equals(want)
