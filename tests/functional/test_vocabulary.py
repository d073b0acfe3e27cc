"""One vocabulary through every layer: the API accepts what the domain and engine read.

Each test pins a drift that once existed between layers: schema policy names the domain
accepted and the API refused, the ``json`` format the engine read and job creation
refused, and Avro timestamps that Plan inferred otherwise than the domain's mapping.
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datalake.catalog.db import session_scope
from datalake.services import jobs, tables
from datalake.services.schemas import schema_at
from datalake.tokens import make_token
from tests.fakes import LANDING, FakeOrchestrator

ADMIN = {"Authorization": "Bearer " + make_token("tester", ["admin"])}


def store() -> Any:
    from datalake.aws.s3 import S3ObjectStore

    return S3ObjectStore()


def run_job(job_id: str) -> None:
    """Plan, every batch and Commit, in the state machine's order."""
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch

    with session_scope() as session:
        jobs.start_job(session, job_id, orchestrator=FakeOrchestrator())
    plan = plan_job(job_id, store=store())
    for item in plan["batches"]:
        run_batch(job_id, item["batch_id"], store=store())
    jobs.publish_job(job_id, store=None)


def read_committed(s3: Any, table_id: str) -> pa.Table:
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
        keys = [(f.bucket, f.key) for f in files]
    parts = [pq.read_table(io.BytesIO(s3.get_object(Bucket=b, Key=k)["Body"].read()))
             for b, k in keys]
    return pa.concat_tables(parts)


@pytest.mark.parametrize(
    ("written", "stored"),
    [("Evolve", "evolve"), ("FREEZE", "freeze"), ("discard-columns", "discard_columns"),
     ("Discard_Columns", "discard_columns")],
)
def test_the_api_accepts_the_policy_names_the_domain_accepts(
    api: Any, written: str, stored: str
) -> None:
    r = api.post("/api/v1/tables/", json={"name": "t", "schema_policy": written}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["schema_policy"] == stored
    table_id = r.json()["id"]
    r = api.put(f"/api/v1/tables/{table_id}", json={"schema_policy": "evolve"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["schema_policy"] == "evolve"
    r = api.put(f"/api/v1/tables/{table_id}", json={"schema_policy": written}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["schema_policy"] == stored
    with session_scope() as session:
        assert tables.get_table(session, table_id).schema_policy == stored


def test_an_unknown_policy_is_still_refused(api: Any) -> None:
    r = api.post("/api/v1/tables/", json={"name": "t"}, headers=ADMIN)
    assert r.status_code == 201
    r = api.put(f"/api/v1/tables/{r.json()['id']}", json={"schema_policy": "drift"},
                headers=ADMIN)
    assert r.status_code == 422


def test_a_table_format_is_stored_with_its_defaults(api: Any) -> None:
    r = api.post("/api/v1/tables/", json={"name": "t"}, headers=ADMIN)
    assert r.status_code == 201
    assert r.json()["format"] == {"compression": "snappy", "target_file_size_mb": 128}
    r = api.put(f"/api/v1/tables/{r.json()['id']}", json={"format": {"compression": "ZSTD"}},
                headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["format"] == {"compression": "zstd", "target_file_size_mb": 128}


def test_a_job_and_a_source_accept_the_json_format_the_engine_reads(s3: Any, api: Any) -> None:
    body = "".join(f'{{"id": {i}, "name": "n{i}"}}\n' for i in range(50))
    # No extension: only the job's format says how to read the object.
    s3.put_object(Bucket=LANDING, Key="in/events.dat", Body=body.encode())
    table = api.post("/api/v1/tables/", json={"name": "t"}, headers=ADMIN).json()
    r = api.post(
        "/api/v1/ingestion/jobs",
        json={"table_id": table["id"], "sources": [f"s3://{LANDING}/in/events.dat"],
              "format": "json"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert r.json()["format"] == "jsonl"
    r = api.post(
        "/api/v1/sources/",
        json={"name": "s", "table_id": table["id"], "bucket": LANDING, "prefix": "in/",
              "format": "JSON"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert r.json()["format"] == "jsonl"

    job_id = api.get("/api/v1/ingestion/jobs", headers=ADMIN).json()["items"][0]["id"]
    run_job(job_id)
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        assert (job.status, job.records_written) == ("SUCCEEDED", 50)
    assert sorted(read_committed(s3, table["id"]).column("id").to_pylist()) == list(range(50))


def test_plan_infers_avro_types_as_the_domain_maps_them(s3: Any) -> None:
    import datetime as dt

    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "id", "type": "long"},
            # Iceberg writes both of its timestamp types as timestamp-micros
            {"name": "local", "type": {"type": "long", "logicalType": "timestamp-micros",
                                       "adjust-to-utc": False}},
            {"name": "utc", "type": {"type": "long", "logicalType": "timestamp-micros",
                                     "adjust-to-utc": True}},
            {"name": "plain", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "digest", "type": {"type": "fixed", "name": "md5", "size": 16}},
        ],
    }
    when = dt.datetime(2024, 5, 6, 7, 8, 9)
    rows = [{"id": i, "local": when, "utc": when.replace(tzinfo=dt.UTC),
             "plain": when.replace(tzinfo=dt.UTC), "digest": bytes([i]) * 16} for i in range(20)]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), rows)
    s3.put_object(Bucket=LANDING, Key="in/data.avro", Body=buf.getvalue())
    with session_scope() as session:
        table = tables.create_table(session, name="t")
        job = jobs.create_job(session, table_id=table.id, sources=[f"s3://{LANDING}/in/"])
        table_id, job_id = table.id, job.id
    run_job(job_id)
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        assert (job.status, job.records_written) == ("SUCCEEDED", 20)
        types = {f.name: f.type for f in schema_at(session, table_id, job.schema_version).fields}
    assert types == {"id": "long", "local": "timestamp", "utc": "timestamptz",
                     "plain": "timestamptz", "digest": "fixed[16]"}
    data = read_committed(s3, table_id).sort_by("id")
    assert data.schema.field("local").type == pa.timestamp("us")
    assert data.column("local").to_pylist()[0] == when
    assert data.column("utc").to_pylist()[0] == when.replace(tzinfo=dt.UTC)
    assert data.column("digest").to_pylist()[3] == bytes([3]) * 16
