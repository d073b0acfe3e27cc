"""Tables published as Apache Iceberg, read by engines we did not write.

S3 here is moto's server on a local port (not the in-process mock): pyiceberg's PyArrow
reader, DuckDB's iceberg extension and polars all read the objects over HTTP, as they
would from S3. The Iceberg SQL catalog is the project's own database, SQLite and Postgres.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest

from datalake.aws import clients
from datalake.catalog.db import normalise_url, session_scope
from datalake.config import get_settings
from datalake.services import iceberg, jobs, tables
from tests.fakes import LAKE, LANDING, FakeOrchestrator

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's S3 as a real HTTP endpoint (started once for the module)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(use_catalog: str, moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Fresh lake and landing buckets on the moto server; our clients pointed at it."""
    monkeypatch.setenv("DATALAKE_LAKE_BUCKET", LAKE)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    get_settings.cache_clear()
    clients.reset()
    iceberg.reset()
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    for bucket in (LAKE, LANDING):
        _empty(client, bucket)
        client.create_bucket(Bucket=bucket)
    yield client
    for bucket in (LAKE, LANDING):
        _empty(client, bucket)
    clients.reset()
    iceberg.reset()
    get_settings.cache_clear()


def _empty(client: Any, bucket: str) -> None:
    try:
        keys = [o["Key"] for p in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in p.get("Contents", [])]
    except client.exceptions.NoSuchBucket:
        return
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket,
                              Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
    client.delete_bucket(Bucket=bucket)


def store() -> Any:
    from datalake.aws.s3 import S3ObjectStore

    return S3ObjectStore()


def csv_rows(first: int, n: int, *, days: int = 5) -> str:
    """``n`` rows with ids from ``first``, spread over ``days`` days of January 2013."""
    return "".join(
        f"{i},2013-01-{1 + i % days:02d} {i % 24:02d}:00:00,{'AA' if i % 2 else 'UA'},{i % 7}\n"
        for i in range(first, first + n)
    )


HEADER = "id,ts,carrier,delay\n"


def make_table(name: str = "t", partitioning: list[dict[str, str]] | None = None) -> str:
    with session_scope() as session:
        table = tables.create_table(
            session, name=name,
            partitioning=partitioning or [{"column": "ts", "transform": "day"}],
        )
        return table.id


def start_job(s3: Any, table_id: str, body: str, key: str, **opts: Any) -> str:
    s3.put_object(Bucket=LANDING, Key=key, Body=body.encode())
    with session_scope() as session:
        job = jobs.create_job(session, table_id=table_id, sources=[f"s3://{LANDING}/{key}"],
                              options=opts or None)
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        return job.id


def plan_and_run(job_id: str, *, batches: int | None = None) -> list[dict[str, Any]]:
    """Plan the job and run its first ``batches`` batches (all by default)."""
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch

    plan = plan_job(job_id, store=store())
    items = plan["batches"]
    for item in items[:batches]:
        run_batch(job_id, item["batch_id"], store=store())
    return list(items)


def run_job(s3: Any, table_id: str, body: str, key: str, **opts: Any) -> str:
    job_id = start_job(s3, table_id, body, key, **opts)
    plan_and_run(job_id)
    jobs.publish_job(job_id, store=store())
    return job_id


# ---------------------------------------------------------------------- readers


def reader_catalog(catalog_url: str, endpoint: str) -> Any:
    """The Iceberg SQL catalog as any pyiceberg user opens it: plain SqlCatalog, its own
    PyArrow FileIO (no code of ours)."""
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(
        "datalake",
        uri=normalise_url(catalog_url),
        warehouse=f"s3://{LAKE}",
        **{
            "s3.endpoint": endpoint,
            "s3.access-key-id": "testing",
            "s3.secret-access-key": "testing",
            "s3.region": "us-east-1",
            "init_catalog_tables": "false",
        },
    )


def duckdb_connection(endpoint: str) -> Any:
    """DuckDB with its iceberg and httpfs extensions loaded from their PyPI packages."""
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_httpfs
    import duckdb_extension_iceberg

    # No extension repository here (INSTALL would download): each extension comes from
    # its PyPI package, loaded by path; iceberg needs avro (manifests) and httpfs (S3).
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    for module, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_httpfs, "httpfs"),
                         (duckdb_extension_iceberg, "iceberg")):
        path = next(Path(module.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension"))
        con.execute(f"LOAD '{path}'")
    host = endpoint.removeprefix("http://")
    con.execute(
        f"CREATE SECRET moto (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
        f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)"
    )
    return con


def ids_pyiceberg(tbl: Any, **scan: Any) -> list[int]:
    return sorted(tbl.scan(selected_fields=("id",), **scan).to_arrow()["id"].to_pylist())


def ids_duckdb(con: Any, metadata_location: str) -> list[int]:
    rows = con.execute(f"SELECT id FROM iceberg_scan('{metadata_location}')").fetchall()
    return sorted(r[0] for r in rows)


def ids_polars(tbl: Any) -> list[int]:
    import polars as pl

    return sorted(pl.scan_iceberg(tbl).select("id").collect()["id"].to_list())


def load(catalog_url: str, endpoint: str, name: str = "t") -> Any:
    return reader_catalog(catalog_url, endpoint).load_table(("default", name))


# ------------------------------------------------------------------------ tests


def test_each_job_is_one_snapshot_and_every_engine_sees_only_committed_jobs(
    s3: Any, catalog_url: str, moto_server: str
) -> None:
    table_id = make_table()
    first = run_job(s3, table_id, HEADER + csv_rows(0, 300), "in/a.csv")

    # A second job, many batches, running: two of its batches written, not committed.
    body = HEADER + csv_rows(1000, 600)
    second = start_job(s3, table_id, body, "in/b.csv", split_size_mb=0.004, batch_size=50)
    items = plan_and_run(second, batches=2)
    assert len(items) > 2

    tbl = load(catalog_url, moto_server)
    con = duckdb_connection(moto_server)
    expected = list(range(300))
    assert ids_pyiceberg(tbl) == expected
    assert ids_duckdb(con, tbl.metadata_location) == expected
    assert ids_polars(tbl) == expected

    from datalake.services.worker import run_batch

    for item in items[2:]:
        run_batch(second, item["batch_id"], store=store())
    jobs.publish_job(second, store=store())
    tbl = load(catalog_url, moto_server)
    expected = list(range(300)) + list(range(1000, 1600))
    assert ids_pyiceberg(tbl) == expected
    assert ids_duckdb(con, tbl.metadata_location) == expected
    assert ids_polars(tbl) == expected

    snaps = tbl.metadata.snapshots
    assert [s.summary.additional_properties.get(iceberg.SUMMARY_JOB) for s in snaps] == [
        first, second
    ]
    assert all(s.summary.operation.value == "append" for s in snaps)
    assert tbl.metadata.format_version == 2
    # time travel: the first job's snapshot holds exactly its rows
    assert ids_pyiceberg(tbl, snapshot_id=snaps[0].snapshot_id) == list(range(300))

    # the API's file listing is exactly the current snapshot's files
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
        listed = {f"s3://{f.bucket}/{f.key}" for f in files}
    assert listed == {t.file.file_path for t in tbl.scan().plan_files()}
