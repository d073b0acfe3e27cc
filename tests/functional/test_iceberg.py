"""Tables published as Apache Iceberg, read by engines we did not write.

S3 here is moto's server on a local port (not the in-process mock): pyiceberg's PyArrow
reader, DuckDB's iceberg extension and polars all read the objects over HTTP, as they
would from S3. The Iceberg SQL catalog is the project's own database, SQLite and Postgres.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
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
from tests.fakes import LAKE, LANDING, FakeOrchestrator, cli_document


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


def start_job(s3: Any, table_id: str, body: str | bytes, key: str, **opts: Any) -> str:
    s3.put_object(Bucket=LANDING, Key=key, Body=body if isinstance(body, bytes) else body.encode())
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


def ids_polars(tbl: Any, snapshot_id: int | None = None) -> list[int]:
    import polars as pl

    # polars plans Iceberg scans with pyiceberg unless its optional planner is installed
    os.environ.setdefault("POLARS_ICEBERG_PLANNER", "pyiceberg")

    frame = pl.scan_iceberg(tbl, snapshot_id=snapshot_id).select("id").collect()
    return sorted(frame["id"].to_list())


def polars_rows(tbl: Any, *columns: str, snapshot_id: int | None = None) -> list[Any]:
    """``columns`` of every row as polars reads them, sorted by the first."""
    import polars as pl

    os.environ.setdefault("POLARS_ICEBERG_PLANNER", "pyiceberg")
    frame = pl.scan_iceberg(tbl, snapshot_id=snapshot_id).select(*columns).collect()
    return sorted(frame.iter_rows(), key=lambda r: r[0])


def duckdb_files_read(con: Any, query: str) -> int:
    """How many data files DuckDB's Iceberg scan read for ``query`` (EXPLAIN ANALYZE)."""
    plan = "\n".join(str(r[1]) for r in con.execute("EXPLAIN ANALYZE " + query).fetchall())
    found = re.findall(r"Total Files Read: (\d+)", plan)
    assert len(found) == 1, plan
    return int(found[0])


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


def published_jobs(catalog_url: str, endpoint: str) -> list[str | None]:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return snapshot_jobs(load(catalog_url, endpoint))
    except NoSuchTableError:
        return []


def snapshot_jobs(tbl: Any) -> list[str | None]:
    return [s.summary.additional_properties.get(iceberg.SUMMARY_JOB) for s in tbl.snapshots()]


def test_a_crash_between_the_catalog_commit_and_the_iceberg_commit_is_published_once(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table_id = make_table()
    job_a = start_job(s3, table_id, HEADER + csv_rows(0, 200), "in/a.csv")
    plan_and_run(job_a)

    def crash(job: Any) -> None:
        raise RuntimeError("killed after the catalog commit")

    monkeypatch.setattr(jobs, "_between_commits", crash)
    with pytest.raises(RuntimeError):
        jobs.publish_job(job_a, store=store())
    with session_scope() as session:  # committed, not yet published: not SUCCEEDED
        assert jobs.get_job(session, job_a).status == "COMMITTING"
    assert published_jobs(catalog_url, moto_server) == []  # not yet published

    # The crash of a run whose Iceberg commit went through but never returned.
    monkeypatch.setattr(jobs, "_between_commits", lambda job: None)
    real = iceberg.publish_table

    def publish_then_die(table_id: str, **kw: Any) -> Any:
        real(table_id, **kw)
        raise RuntimeError("killed after the Iceberg commit")

    monkeypatch.setattr(iceberg, "publish_table", publish_then_die)
    with pytest.raises(Exception, match="killed after the Iceberg commit"):
        jobs.publish_job(job_a, store=store())
    monkeypatch.setattr(iceberg, "publish_table", real)

    with session_scope() as session:  # published, but this Commit never finished it
        assert jobs.get_job(session, job_a).status == "COMMITTING"
    jobs.publish_job(job_a, store=store())  # the state machine's retry
    jobs.publish_job(job_a, store=store())  # and a redundant one
    with session_scope() as session:
        assert jobs.get_job(session, job_a).status == "SUCCEEDED"
    tbl = load(catalog_url, moto_server)
    assert snapshot_jobs(tbl) == [job_a]
    assert ids_pyiceberg(tbl) == list(range(200))


#: Runs Commit (``publish_job``) in a process of its own that SIGKILLs itself at one
#: point: no ``except``, ``finally`` or ``atexit`` runs, as when Lambda's sandbox dies.
KILLED_COMMIT = """
import os, signal, sys

from datalake.aws.s3 import S3ObjectStore
from datalake.services import jobs

point, job_id = sys.argv[1], sys.argv[2]


def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if point == "after-catalog-commit":  # the job's rows committed, nothing of Iceberg yet
    jobs._between_commits = die
elif point == "metadata-written":  # the snapshot's files and metadata.json, no pointer swap
    from pyiceberg.catalog import MetastoreCatalog

    real_write = MetastoreCatalog._write_metadata

    def write_then_die(metadata, io, metadata_path):
        real_write(metadata, io, metadata_path)
        die()

    MetastoreCatalog._write_metadata = staticmethod(write_then_die)
else:  # "after-iceberg-commit": the catalog's pointer swap committed, Commit not returned
    from pyiceberg.catalog.sql import SqlCatalog

    real_commit = SqlCatalog.commit_table

    def commit_then_die(self, *args, **kwargs):
        real_commit(self, *args, **kwargs)
        die()

    SqlCatalog.commit_table = commit_then_die
jobs.publish_job(job_id, store=S3ObjectStore())
print("Commit returned: the process was never killed")
"""


@pytest.mark.parametrize("point", ["after-catalog-commit", "metadata-written",
                                   "after-iceberg-commit"])
def test_a_commit_process_killed_at_each_point_then_retried_is_one_snapshot_exact_rows(
    s3: Any, catalog_url: str, moto_server: str, point: str
) -> None:
    table_id = make_table()
    first = run_job(s3, table_id, HEADER + csv_rows(0, 100), "in/a.csv")
    job_id = start_job(s3, table_id, HEADER + csv_rows(1000, 400), "in/b.csv",
                       split_size_mb=0.004, batch_size=50)
    assert len(plan_and_run(job_id)) > 1

    killed = subprocess.run([sys.executable, "-c", KILLED_COMMIT, point, job_id],
                            env=dict(os.environ), capture_output=True, text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        # committed in the catalog, not SUCCEEDED until its snapshot is published (and
        # the API never says "in Iceberg" before a publish has recorded it)
        assert job.status == "COMMITTING"
        assert jobs.iceberg_published(session, job) is False
    published = [first, job_id] if point == "after-iceberg-commit" else [first]
    assert snapshot_jobs(load(catalog_url, moto_server)) == published

    jobs.publish_job(job_id, store=store())  # the state machine's retry of Commit
    jobs.publish_job(job_id, store=store())  # and one more, for good measure
    tbl = load(catalog_url, moto_server)
    assert snapshot_jobs(tbl) == [first, job_id]
    expected = list(range(100)) + list(range(1000, 1400))
    con = duckdb_connection(moto_server)
    assert ids_pyiceberg(tbl) == ids_duckdb(con, tbl.metadata_location) == expected
    assert ids_polars(tbl) == expected
    assert int(tbl.current_snapshot().summary["total-records"]) == len(expected)
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        assert job.status == "SUCCEEDED" and job.records_written == 400
        assert jobs.iceberg_published(session, job) is True
        files, _ = tables.committed_files(session, table_id)
        assert {f"s3://{f.bucket}/{f.key}" for f in files} == {
            t.file.file_path for t in tbl.scan().plan_files()
        }


def test_pyiceberg_reads_all_of_a_jobs_rows_at_the_first_moment_its_status_reads_succeeded(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread polls the job's status while Commit runs (its Iceberg publish slowed
    down, so the poller sees every state Commit passes through); the first time it reads
    SUCCEEDED it scans the table with plain pyiceberg: all of the job's rows are there."""
    import time

    table_id = make_table()
    first = run_job(s3, table_id, HEADER + csv_rows(0, 100), "in/a.csv")
    job_id = start_job(s3, table_id, HEADER + csv_rows(1000, 300), "in/b.csv",
                       split_size_mb=0.004, batch_size=50)
    plan_and_run(job_id)
    real = iceberg.publish_table

    def slow_publish(table: str, **kw: Any) -> Any:
        time.sleep(0.6)
        return real(table, **kw)

    monkeypatch.setattr(iceberg, "publish_table", slow_publish)
    seen: list[str] = []
    at_success: list[list[int]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with session_scope() as session:
                status = jobs.get_job(session, job_id).status
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == "SUCCEEDED":
                try:
                    at_success.append(ids_pyiceberg(load(catalog_url, moto_server)))
                except Exception as e:  # no Iceberg table yet: no rows at all
                    at_success.append([-1])
                    seen.append(f"{type(e).__name__}: {e}")
                return
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        jobs.publish_job(job_id, store=store())
    finally:
        poller.join(timeout=60)
        stop.set()
    assert at_success == [list(range(100)) + list(range(1000, 1300))], seen
    assert "COMMITTING" in seen and seen[-1] == "SUCCEEDED", seen
    assert snapshot_jobs(load(catalog_url, moto_server)) == [first, job_id]


def test_a_committing_job_cannot_be_cancelled_and_its_abort_finishes_it(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commit's retries all fail after the catalog commit: the job stays COMMITTING (its
    files committed), a cancel is refused, and the workflow's Catch (Abort) finishes it
    as SUCCEEDED with its snapshot, never FAILED with its objects deleted."""
    from datalake.errors import Conflict
    from datalake.services.abort import abort_workflow

    table_id = make_table()
    job_id = start_job(s3, table_id, HEADER + csv_rows(0, 200), "in/a.csv")
    plan_and_run(job_id)
    monkeypatch.setattr(jobs, "_between_commits", lambda job: (_ for _ in ()).throw(
        RuntimeError("Iceberg unreachable")))
    for _ in range(2):
        with pytest.raises(RuntimeError):
            jobs.publish_job(job_id, store=store())
    with session_scope() as session:
        assert jobs.get_job(session, job_id).status == "COMMITTING"
        with pytest.raises(Conflict, match=r"has committed its files .* cannot be cancelled"):
            jobs.cancel_job(session, job_id, orchestrator=FakeOrchestrator(), store=store())
    assert published_jobs(catalog_url, moto_server) == []

    out = abort_workflow(job_id, error="Commit failed", store=store())
    assert out["status"] == "SUCCEEDED"
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        assert job.status == "SUCCEEDED" and job.error is None
        assert jobs.iceberg_published(session, job) is True
        files, _ = tables.committed_files(session, table_id)
    tbl = load(catalog_url, moto_server)
    assert snapshot_jobs(tbl) == [job_id]
    assert ids_pyiceberg(tbl) == list(range(200))
    for f in files:  # every committed object is still there
        s3.head_object(Bucket=f.bucket, Key=f.key)


def test_a_job_left_unpublished_is_published_first_by_the_next_commit(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table_id = make_table()
    job_a = start_job(s3, table_id, HEADER + csv_rows(0, 100), "in/a.csv")
    plan_and_run(job_a)
    monkeypatch.setattr(jobs, "_between_commits", lambda job: (_ for _ in ()).throw(
        RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        jobs.publish_job(job_a, store=store())
    monkeypatch.setattr(jobs, "_between_commits", lambda job: None)
    job_b = run_job(s3, table_id, HEADER + csv_rows(500, 100), "in/b.csv")
    tbl = load(catalog_url, moto_server)
    assert snapshot_jobs(tbl) == [job_a, job_b]
    assert ids_pyiceberg(tbl, snapshot_id=tbl.snapshots()[0].snapshot_id) == list(range(100))
    assert ids_pyiceberg(tbl) == list(range(100)) + list(range(500, 600))


def test_compaction_is_one_replace_snapshot_and_time_travel_still_reads_each_job(
    s3: Any, catalog_url: str, moto_server: str
) -> None:
    from datalake.services.compaction import compact_table

    table_id = make_table()
    job_ids = [run_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/{k}.csv")
               for k in range(3)]
    before = load(catalog_url, moto_server)
    files_before = len(list(before.scan().plan_files()))
    summary = compact_table(table_id, store=store())
    assert summary.files_replaced == files_before and not summary.errors

    tbl = load(catalog_url, moto_server)
    snaps = tbl.snapshots()
    assert len(snaps) == len(before.snapshots()) + 1
    assert snaps[-1].summary.operation.value == "replace"
    assert snaps[-1].summary.additional_properties[iceberg.SUMMARY_CHANGE] == "compaction"
    files_after = len(list(tbl.scan().plan_files()))
    assert files_after < files_before
    assert files_after == 5  # one per day
    expected = list(range(300))
    con = duckdb_connection(moto_server)
    assert ids_pyiceberg(tbl) == ids_duckdb(con, tbl.metadata_location) == expected
    assert ids_polars(tbl) == expected
    for k, snap in enumerate(snaps[:3]):  # time travel to each job's snapshot
        assert snap.summary.additional_properties[iceberg.SUMMARY_JOB] == job_ids[k]
        as_of = list(range((k + 1) * 100))
        assert ids_pyiceberg(tbl, snapshot_id=snap.snapshot_id) == as_of
        assert ids_polars(tbl, snapshot_id=snap.snapshot_id) == as_of
        rows = con.execute(f"SELECT id FROM iceberg_scan('{tbl.metadata_location}', "
                           f"snapshot_from_id = {snap.snapshot_id})").fetchall()
        assert sorted(r[0] for r in rows) == as_of
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
        assert {f"s3://{f.bucket}/{f.key}" for f in files} == {
            t.file.file_path for t in tbl.scan().plan_files()
        }


def test_replaced_files_are_deleted_only_once_the_snapshots_listing_them_expire(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datalake.services.compaction import compact_table, sweep_replaced

    table_id = make_table()
    for k in range(2):
        run_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/{k}.csv")
    old = load(catalog_url, moto_server)
    old_files = {t.file.file_path for t in old.scan().plan_files()}
    compact_table(table_id, store=store())
    # Within the retention period: nothing swept, the old snapshots still read.
    assert sweep_replaced(table_id, store()) == 0
    tbl = load(catalog_url, moto_server)
    assert ids_pyiceberg(tbl, snapshot_id=old.current_snapshot().snapshot_id) == list(range(200))
    # Past it: snapshots expire, then their files go, and only the current one is left.
    assert sweep_replaced(table_id, store(), retention_seconds=0) == len(old_files)
    tbl = load(catalog_url, moto_server)
    assert len(tbl.snapshots()) == 1
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=LAKE).get("Contents", [])}
    assert not {p.removeprefix(f"s3://{LAKE}/") for p in old_files} & keys
    assert ids_pyiceberg(tbl) == list(range(200))
    # and metadata nothing refers to any more is cleaned up too
    removed = iceberg.delete_orphan_metadata(table_id, older_than_seconds=0)
    assert removed > 0
    assert ids_pyiceberg(load(catalog_url, moto_server)) == list(range(200))


def polars_files_read(
    tbl: Any, start: dt.datetime, end: dt.datetime, capfd: pytest.CaptureFixture[str]
) -> tuple[int, int]:
    """How many data files polars' Iceberg scan reads for ``start <= ts < end`` (its
    verbose log names the number of sources it hands its Parquet reader), and the rows."""
    import polars as pl

    os.environ.setdefault("POLARS_ICEBERG_PLANNER", "pyiceberg")
    capfd.readouterr()
    with pl.Config(verbose=True):
        n = pl.scan_iceberg(tbl).filter(
            (pl.col("ts") >= start) & (pl.col("ts") < end)
        ).select(pl.len()).collect().item()
    log = capfd.readouterr().err
    found = re.findall(r"native scan_parquet\(\): num_sources: (\d+)", log)
    assert len(found) == 1, log
    return int(found[0]), int(n)


def test_a_query_on_one_day_plans_only_that_days_files(
    s3: Any, catalog_url: str, moto_server: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    table_id = make_table(partitioning=[{"column": "ts", "transform": "day"},
                                        {"column": "carrier", "transform": "bucket[4]"}])
    for k in range(2):
        run_job(s3, table_id, HEADER + csv_rows(k * 1000, 1000, days=10), f"in/{k}.csv")
    tbl = load(catalog_url, moto_server)
    spec = tbl.spec()
    assert [(f.name, str(f.transform)) for f in spec.fields] == [
        ("ts_day", "day"), ("carrier_bucket", "bucket[4]")
    ]
    all_files = list(tbl.scan().plan_files())
    one_day = And(GreaterThanOrEqual("ts", "2013-01-03T00:00:00"),
                  LessThan("ts", "2013-01-04T00:00:00"))
    planned = list(tbl.scan(row_filter=one_day).plan_files())
    # every planned file is that day's, and every file of that day is planned
    assert {t.file.file_path for t in planned} == {
        t.file.file_path for t in all_files if "ts_day=2013-01-03/" in t.file.file_path
    }
    assert 0 < len(planned) < len(all_files) / 5
    rows = tbl.scan(row_filter=one_day, selected_fields=("id",)).to_arrow()
    assert sorted(rows["id"].to_pylist()) == [
        i for i in range(2000) if i % 10 == 2
    ]
    # DuckDB and polars prune the same way: they read exactly the files pyiceberg plans
    con = duckdb_connection(moto_server)
    query = (f"SELECT count(*) FROM iceberg_scan('{tbl.metadata_location}') "
             "WHERE ts >= TIMESTAMP '2013-01-03' AND ts < TIMESTAMP '2013-01-04'")
    assert con.execute(query).fetchone()[0] == 200
    duckdb_read = duckdb_files_read(con, query)
    polars_read, polars_rows = polars_files_read(
        tbl, dt.datetime(2013, 1, 3), dt.datetime(2013, 1, 4), capfd
    )
    print(f"partition pruning: pyiceberg plans {len(planned)} of {len(all_files)} files, "
          f"DuckDB reads {duckdb_read}, polars {polars_read}")
    assert duckdb_read == polars_read == len(planned)
    assert polars_rows == 200


def test_each_data_file_is_described_by_its_own_contents(
    s3: Any, catalog_url: str, moto_server: str
) -> None:
    """The metrics and partition tuple published for each file (from the footer our
    writer kept) are what the object itself holds, by field id."""
    import io

    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyiceberg.conversions import from_bytes
    from pyiceberg.transforms import BucketTransform, DayTransform
    from pyiceberg.types import StringType, TimestampType
    from pyiceberg.utils.datetime import datetime_to_micros

    table_id = make_table(partitioning=[{"column": "ts", "transform": "day"},
                                        {"column": "carrier", "transform": "bucket[4]"}])
    nulls = "".join(f"{i},2013-01-0{1 + i % 3} 05:00:00,AA,\n" for i in range(900, 960))
    run_job(s3, table_id, HEADER + csv_rows(0, 400, days=3) + nulls, "in/a.csv")
    tbl = load(catalog_url, moto_server)
    types = {f.field_id: f.field_type for f in tbl.schema().fields}
    day = DayTransform().transform(TimestampType())
    bucket = BucketTransform(4).transform(StringType())
    tasks = list(tbl.scan().plan_files())
    assert len(tasks) > 3
    nulls_seen = 0
    for task in tasks:
        f = task.file
        bucket_name, key = f.file_path.removeprefix("s3://").split("/", 1)
        raw = s3.get_object(Bucket=bucket_name, Key=key)["Body"].read()
        data = pq.read_table(io.BytesIO(raw))
        meta = pq.read_metadata(io.BytesIO(raw))
        assert f.record_count == data.num_rows and f.file_size_in_bytes == len(raw)
        ids = {int(c.metadata[b"PARQUET:field_id"]): c.name for c in data.schema}
        assert set(ids) == set(types) == set(f.value_counts) == set(f.null_value_counts)
        for fid, name in ids.items():
            column = data[name]
            index = data.schema.get_field_index(name)
            assert f.column_sizes[fid] == sum(
                meta.row_group(g).column(index).total_compressed_size
                for g in range(meta.num_row_groups)
            ), name
            assert f.value_counts[fid] == data.num_rows, name
            assert f.null_value_counts[fid] == column.null_count, name
            nulls_seen += column.null_count
            if column.null_count == len(column):
                assert fid not in f.lower_bounds, name
                continue
            low, high = pc.min(column).as_py(), pc.max(column).as_py()
            if isinstance(low, dt.datetime):
                low, high = datetime_to_micros(low), datetime_to_micros(high)
            assert from_bytes(types[fid], f.lower_bounds[fid]) == low, name
            assert from_bytes(types[fid], f.upper_bounds[fid]) == high, name
        firsts = [meta.row_group(g).column(0) for g in range(meta.num_row_groups)]
        assert f.split_offsets == sorted(  # where each row group starts
            c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset
            for c in firsts
        )
        # the partition tuple is Iceberg's transform of every row's values
        days = {day(datetime_to_micros(v)) for v in data["ts"].to_pylist()}
        buckets = {bucket(v) for v in data["carrier"].to_pylist()}
        assert (days, buckets) == ({f.partition[0]}, {f.partition[1]})
    assert nulls_seen == 60


def test_range_partitions_are_published_without_that_field_and_still_prune_by_bounds(
    s3: Any, catalog_url: str, moto_server: str
) -> None:
    from pyiceberg.expressions import GreaterThanOrEqual

    table_id = make_table(partitioning=[{"column": "id", "transform": "range[100,200]"}])
    run_job(s3, table_id, HEADER + csv_rows(0, 300), "in/a.csv")
    tbl = load(catalog_url, moto_server)
    assert tbl.spec().fields == ()  # no Iceberg transform for range[...]
    assert ids_pyiceberg(tbl) == list(range(300))
    planned = list(tbl.scan(row_filter=GreaterThanOrEqual("id", 250)).plan_files())
    assert len(planned) == 1 and "id_range=ge_200/" in planned[0].file.file_path


def test_schema_evolution_and_rollback_keep_field_ids_for_every_engine(
    s3: Any, catalog_url: str, moto_server: str
) -> None:
    """Added column, int -> long, then a rollback that drops the column and narrows the
    type again: old and new files read by field id, in pyiceberg and in DuckDB."""
    from datalake.services import schemas
    from tests.functional.test_schema_evolution_e2e import BASE_SCHEMA, F1, F2, F3, parquet

    with session_scope() as session:
        table_id = tables.create_table(
            session, name="evo", schema=BASE_SCHEMA, compatibility="NONE",
            partitioning=[{"column": "ts", "transform": "day"}],
        ).id
    for key, body in (("evo/f1.parquet", F1), ("evo/f2.parquet", F2), ("evo/f3.avro", F3)):
        job_id = start_job(s3, table_id, body, key)
        plan_and_run(job_id)
        jobs.publish_job(job_id, store=store())

    tbl = load(catalog_url, moto_server, "evo")
    fields = {f.name: (f.field_id, str(f.field_type)) for f in tbl.schema().fields}
    assert fields == {"id": (1, "long"), "name": (2, "string"), "score": (3, "float"),
                      "ts": (4, "timestamp"), "city": (5, "string")}
    assert len(tbl.schemas()) == 3  # base, + city, id long
    got = tbl.scan(selected_fields=("id", "city")).to_arrow().sort_by("id")
    assert got["id"].to_pylist() == [1, 2, 3, 4, 3_000_000_000, 4_000_000_000]
    assert got["city"].to_pylist() == [None, None, "Oslo", "Rome", "Lima", None]
    con = duckdb_connection(moto_server)
    assert con.execute(
        f"SELECT count(*), max(id), count(city) FROM iceberg_scan('{tbl.metadata_location}')"
    ).fetchone() == (6, 4_000_000_000, 3)
    assert polars_rows(tbl, "id", "city") == list(zip(got["id"].to_pylist(),
                                                      got["city"].to_pylist(), strict=True))

    # Roll back to version 1 (no city, id int) and ingest under it.
    with session_scope() as session:
        v1 = next(v for v in schemas.history(session, table_id) if v.version == 1)
        schemas.apply_version(session, v1.id)
    f6 = parquet({"id": pa.array([7], pa.int32()), "name": pa.array(["h"]),
                  "score": pa.array([9.5], pa.float32()),
                  "ts": pa.array([dt.datetime(2024, 1, 6, 10)], pa.timestamp("us"))})
    job_id = start_job(s3, table_id, f6, "evo/f6.parquet")
    plan_and_run(job_id)
    jobs.publish_job(job_id, store=store())
    tbl = load(catalog_url, moto_server, "evo")
    fields = {f.name: (f.field_id, str(f.field_type)) for f in tbl.schema().fields}
    # the same ids; the type stays long (Iceberg never narrows: the files hold longs)
    assert fields == {"id": (1, "long"), "name": (2, "string"), "score": (3, "float"),
                      "ts": (4, "timestamp")}
    got = tbl.scan().to_arrow().sort_by("id")
    assert got.column_names == ["id", "name", "score", "ts"]
    assert got["id"].to_pylist() == [1, 2, 3, 4, 7, 3_000_000_000, 4_000_000_000]
    assert ids_duckdb(duckdb_connection(moto_server), tbl.metadata_location) == sorted(
        got["id"].to_pylist()
    )
    assert ids_polars(tbl) == sorted(got["id"].to_pylist())
    # time travel to the snapshot before the rollback still has city, by its id
    before = tbl.snapshots()[2]
    old = tbl.scan(snapshot_id=before.snapshot_id).to_arrow()
    assert "city" in old.column_names and old.num_rows == 6
    assert sorted(polars_rows(tbl, "id", "city", snapshot_id=before.snapshot_id)) == sorted(
        zip(old["id"].to_pylist(), old["city"].to_pylist(), strict=True)
    )


@pytest.fixture
def api_server(s3: Any) -> Iterator[str]:
    """The API over HTTP (uvicorn in a thread), for Iceberg REST clients."""
    import uvicorn

    from datalake_api.main import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}/api/v1/iceberg"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_rest_catalog_serves_the_tables_to_pyiceberg_and_duckdb_with_a_token(
    s3: Any, catalog_url: str, moto_server: str, api_server: str
) -> None:
    import httpx
    from pyiceberg.catalog.rest import RestCatalog
    from pyiceberg.exceptions import NoSuchTableError

    from datalake.tokens import make_token

    table_id = make_table()
    run_job(s3, table_id, HEADER + csv_rows(0, 120), "in/a.csv")
    token = make_token("engine", ["reader"])
    assert httpx.get(f"{api_server}/v1/config").status_code == 401
    assert httpx.get(f"{api_server}/v1/config",
                     headers={"Authorization": "Bearer x"}).status_code == 401

    rest = RestCatalog("lake", uri=api_server, token=token, **{
        "s3.endpoint": moto_server, "s3.access-key-id": "testing",
        "s3.secret-access-key": "testing", "s3.region": "us-east-1"})
    assert rest.list_namespaces() == [("default",)]
    assert rest.load_namespace_properties("default") == {}
    assert rest.list_tables("default") == [("default", "t")]
    assert rest.table_exists(("default", "t"))
    tbl = rest.load_table(("default", "t"))
    assert ids_pyiceberg(tbl) == list(range(120))
    with pytest.raises(NoSuchTableError):
        rest.load_table(("default", "nope"))

    # GET /tables/{id} names the same metadata file
    admin = make_token("admin", ["admin"])
    got = httpx.get(api_server.removesuffix("/iceberg") + f"/tables/{table_id}",
                    headers={"Authorization": f"Bearer {admin}"}).json()
    assert got["iceberg"] == {"identifier": "default.t",
                              "metadata_location": tbl.metadata_location}
    # and GET /tables/{id}/files lists exactly the current snapshot's files
    listing = httpx.get(api_server.removesuffix("/iceberg") + f"/tables/{table_id}/files",
                        params={"limit": 1000},
                        headers={"Authorization": f"Bearer {admin}"}).json()
    assert listing["next"] is None
    assert sorted(f["path"] for f in listing["items"]) == sorted(
        t.file.file_path for t in tbl.scan().plan_files()
    )

    con = duckdb_connection(moto_server)
    con.execute(f"CREATE SECRET lake_rest (TYPE iceberg, TOKEN '{token}')")
    con.execute(
        f"ATTACH 'lake' AS lake (TYPE iceberg, ENDPOINT '{api_server}', SECRET lake_rest)"
    )
    rows = con.execute("SELECT id FROM lake.default.t ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(range(120))


def test_a_corrupt_file_leaves_iceberg_and_the_rebuild_is_one_overwrite(
    s3: Any, catalog_url: str, moto_server: str
) -> None:
    from datalake.services import rebuild, verify

    table_id = make_table()
    job_id = run_job(s3, table_id, HEADER + csv_rows(0, 500), "in/a.csv")
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
        bad = files[0]
        bad_path, bad_rows, bad_id = f"s3://{bad.bucket}/{bad.key}", bad.record_count, bad.id
    s3.put_object(Bucket=bad.bucket, Key=bad.key, Body=b"not parquet any more")
    verify.mark_corrupt(table_id, [bad_id])
    iceberg.publish_table(table_id)  # the next publish (Commit, compaction, schedule)
    tbl = load(catalog_url, moto_server)
    assert tbl.current_snapshot().summary.operation.value == "delete"
    assert bad_path not in {t.file.file_path for t in tbl.scan().plan_files()}
    assert len(ids_pyiceberg(tbl)) == 500 - bad_rows

    with session_scope() as session:
        new_id = rebuild.retry_job(session, job_id).id
        jobs.start_job(session, new_id, orchestrator=FakeOrchestrator())
    plan_and_run(new_id)
    jobs.publish_job(new_id, store=store())
    tbl = load(catalog_url, moto_server)
    last = tbl.current_snapshot()
    assert last.summary.operation.value == "overwrite"
    assert last.summary.additional_properties[iceberg.SUMMARY_JOB] == new_id
    assert ids_pyiceberg(tbl) == list(range(500))
    assert ids_duckdb(duckdb_connection(moto_server), tbl.metadata_location) == list(range(500))


def test_a_partitioning_change_is_a_new_spec_and_files_of_both_read_and_compact(
    s3: Any, catalog_url: str, moto_server: str
) -> None:
    from datalake.services.compaction import compact_table

    table_id = make_table()
    for k in range(2):
        run_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/d{k}.csv")
    with session_scope() as session:
        tables.update_table(session, table_id,
                            {"partitioning": [{"column": "ts", "transform": "month"}]})
    for k in range(2, 4):
        run_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/m{k}.csv")
    tbl = load(catalog_url, moto_server)
    specs = {s.spec_id: [(f.field_id, f.name, str(f.transform)) for f in s.fields]
             for s in tbl.metadata.partition_specs}
    assert specs == {0: [(1000, "ts_day", "day")], 1: [(1001, "ts_month", "month")]}
    assert {t.file.spec_id for t in tbl.scan().plan_files()} == {0, 1}
    assert ids_pyiceberg(tbl) == list(range(400))
    compact_table(table_id, store=store())  # merges within each spec's partitions
    tbl = load(catalog_url, moto_server)
    assert tbl.current_snapshot().summary.operation.value == "replace"
    assert ids_pyiceberg(tbl) == list(range(400))
    assert ids_duckdb(duckdb_connection(moto_server), tbl.metadata_location) == list(range(400))


def test_the_job_id_in_the_summary_keeps_a_job_from_being_appended_twice(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the change numbers say otherwise (a catalog restored from a backup):
    a job whose id is in the table's history is not appended again."""
    table_id = make_table()
    job_id = run_job(s3, table_id, HEADER + csv_rows(0, 50), "in/a.csv")
    monkeypatch.setattr(iceberg, "last_published_seq", lambda tbl: 0)
    iceberg.publish_table(table_id)
    tbl = load(catalog_url, moto_server)
    assert snapshot_jobs(tbl) == [job_id]
    assert ids_pyiceberg(tbl) == list(range(50))


def test_the_optimize_schedule_expires_old_snapshots_and_orphaned_metadata(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from datalake.services.compaction import sweep_replaced

    table_id = make_table()
    for k in range(3):
        run_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/{k}.csv")
    assert len(load(catalog_url, moto_server).snapshots()) == 3

    def metadata_keys() -> set[str]:
        listing = s3.list_objects_v2(Bucket=LAKE, Prefix="default/t/metadata/")
        return {o["Key"] for o in listing.get("Contents", [])}

    before = metadata_keys()
    time.sleep(1.2)
    monkeypatch.setattr(iceberg, "ORPHAN_MIN_AGE_SECONDS", 0)
    assert sweep_replaced(table_id, store(), retention_seconds=1) == 0  # no data file goes
    tbl = load(catalog_url, moto_server)
    assert len(tbl.snapshots()) == 1
    after = metadata_keys()
    manifest_lists = [{k for k in keys if "/snap-" in k} for keys in (before, after)]
    assert len(manifest_lists[0]) == 3 and len(manifest_lists[1]) == 1  # expired ones went
    assert manifest_lists[1] < manifest_lists[0]
    assert ids_pyiceberg(tbl) == list(range(300))
    assert ids_duckdb(duckdb_connection(moto_server), tbl.metadata_location) == list(range(300))


def test_the_scheduled_optimize_run_keeps_then_expires_by_the_retention_setting(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the scheduled optimize Lambda runs (``optimize(None)``), with
    ``DATALAKE_REPLACED_FILE_RETENTION_SECONDS``: within it, compaction's replaced files
    and the snapshots listing them stay (time travel reads them); past it, the next run
    expires those snapshots, deletes the replaced files and the orphaned metadata."""
    import time

    from datalake.services.optimize import optimize

    table_id = make_table()
    jobs_ = [run_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/{k}.csv")
             for k in range(3)]
    first = load(catalog_url, moto_server).snapshots()[0]
    data_before = {t.file.file_path for t in load(catalog_url, moto_server).scan().plan_files()}

    def keys(prefix: str) -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    monkeypatch.setenv("DATALAKE_REPLACED_FILE_RETENTION_SECONDS", "3600")
    get_settings.cache_clear()
    out = optimize(None, store=store())
    assert out["status"] == "DONE" and out["files_replaced"] == len(data_before)
    tbl = load(catalog_url, moto_server)
    assert [s.summary.operation.value for s in tbl.snapshots()] == [
        "append", "append", "append", "replace"
    ]
    lake = {f"s3://{LAKE}/{k}" for k in keys("default/t/")}
    assert data_before <= lake  # replaced, still there for time travel
    assert ids_pyiceberg(tbl, snapshot_id=first.snapshot_id) == list(range(100))
    assert ids_polars(tbl, snapshot_id=first.snapshot_id) == list(range(100))

    time.sleep(1.2)
    monkeypatch.setenv("DATALAKE_REPLACED_FILE_RETENTION_SECONDS", "1")
    monkeypatch.setattr(iceberg, "ORPHAN_MIN_AGE_SECONDS", 0)
    get_settings.cache_clear()
    manifest_lists = {k for k in keys("default/t/metadata/") if "/snap-" in k}
    assert len(manifest_lists) == 4
    optimize(None, store=store())
    tbl = load(catalog_url, moto_server)
    assert [s.summary.operation.value for s in tbl.snapshots()] == ["replace"]
    lake = {f"s3://{LAKE}/{k}" for k in keys("default/t/")}
    assert not data_before & lake  # the replaced files are gone
    assert {k for k in keys("default/t/metadata/") if "/snap-" in k} == {
        tbl.current_snapshot().manifest_list.removeprefix(f"s3://{LAKE}/")
    }
    expected = list(range(300))
    assert ids_pyiceberg(tbl) == ids_polars(tbl) == expected
    assert ids_duckdb(duckdb_connection(moto_server), tbl.metadata_location) == expected
    with session_scope() as session:
        assert {j.status for j in (jobs.get_job(session, i) for i in jobs_)} == {"SUCCEEDED"}


def test_a_job_reads_iceberg_published_only_once_its_snapshot_is_committed(
    s3: Any, catalog_url: str, moto_server: str, api_server: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between Commit's catalog transaction and its Iceberg commit the job is COMMITTING,
    and ``GET /ingestion/jobs/{id}`` says its rows are not in Iceberg yet."""
    import httpx

    from datalake.tokens import make_token

    table_id = make_table()
    job_id = start_job(s3, table_id, HEADER + csv_rows(0, 50), "in/a.csv")
    plan_and_run(job_id)
    url = api_server.removesuffix("/iceberg") + f"/ingestion/jobs/{job_id}"
    headers = {"Authorization": f"Bearer {make_token('reader', ['reader'])}"}
    seen: list[dict[str, Any]] = []

    def between(job: Any) -> None:
        seen.append(httpx.get(url, headers=headers).json())
        seen.append({"iceberg_jobs": published_jobs(catalog_url, moto_server)})
        listed = httpx.get(url.rsplit("/", 1)[0], headers=headers,
                           params={"status": "RUNNING", "table_id": table_id}).json()
        seen.append({"running": [(j["id"], j["status"], j["phase"]) for j in listed["items"]]})

    monkeypatch.setattr(jobs, "_between_commits", between)
    jobs.publish_job(job_id, store=store())
    # The API answers the contract's statuses: RUNNING, in its committing phase.
    assert seen[0]["status"] == "RUNNING" and seen[0]["phase"] == "committing"
    assert seen[0]["iceberg_published"] is False
    assert seen[1] == {"iceberg_jobs": []}
    assert seen[2] == {"running": [(job_id, "RUNNING", "committing")]}
    after = httpx.get(url, headers=headers).json()
    assert after["status"] == "SUCCEEDED" and after["iceberg_published"] is True
    assert snapshot_jobs(load(catalog_url, moto_server)) == [job_id]
    listed = httpx.get(api_server.removesuffix("/iceberg") + "/ingestion/jobs",
                       headers=headers).json()["items"]
    assert [j["iceberg_published"] for j in listed] == [None]  # lists do not say


def file_paths(tbl: Any) -> set[str]:
    return {t.file.file_path for t in tbl.scan().plan_files()}


def catalog_rows(table_id: str) -> tuple[int, set[str]]:
    """The rows and the paths of the table's committed files, as the catalog lists them."""
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id, limit=10_000)
        return sum(f.record_count for f in files), {f"s3://{f.bucket}/{f.key}" for f in files}


def test_a_file_verify_takes_out_leaves_iceberg_before_the_api_answers(
    s3: Any, catalog_url: str, moto_server: str, api_server: str
) -> None:
    """``POST /tables/{id}/verify`` finds a tampered and a deleted file: by its answer
    the Iceberg table lists neither, so pyiceberg's scan reads (no range error on the
    tampered object) exactly the rows the catalog lists."""
    import httpx

    from datalake.tokens import make_token

    table_id = make_table()
    run_job(s3, table_id, HEADER + csv_rows(0, 500), "in/a.csv")  # one file per day
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
    assert len(files) == 5
    tampered, deleted = files[0], files[1]
    s3.put_object(Bucket=tampered.bucket, Key=tampered.key, Body=b"not parquet any more")
    s3.delete_object(Bucket=deleted.bucket, Key=deleted.key)

    base = api_server.removesuffix("/iceberg")
    headers = {"Authorization": f"Bearer {make_token('ops', ['writer'])}"}
    report = httpx.post(f"{base}/tables/{table_id}/verify", headers=headers, timeout=60).json()
    assert [c["id"] for c in report["corrupt"]] == [tampered.id], report
    assert [m["id"] for m in report["missing"]] == [deleted.id], report

    tbl = load(catalog_url, moto_server)
    rows, paths = catalog_rows(table_id)
    assert rows == 500 - tampered.record_count - deleted.record_count
    assert file_paths(tbl) == paths
    assert len(ids_pyiceberg(tbl)) == rows
    assert tbl.current_snapshot().summary.operation.value == "delete"
    assert report["iceberg_published"] is True


def test_datalake_verify_rehashes_every_file_page_by_page_and_fails_on_any_damage(
    s3: Any, catalog_url: str, moto_server: str, api_server: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``datalake verify`` covers the whole table, however many calls it takes (a page
    of 2 files here), also when every file was verified before; it exits 0 only when
    every file was checked and found good."""
    from datalake.cli.app import run
    from datalake.tokens import make_token

    monkeypatch.setenv("DATALAKE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("DATALAKE_API_URL", api_server.removesuffix("/api/v1/iceberg"))
    monkeypatch.setenv("DATALAKE_TOKEN", make_token("ops", ["writer"]))
    monkeypatch.delenv("DATALAKE_PROFILE", raising=False)
    table_id = make_table()
    run_job(s3, table_id, HEADER + csv_rows(0, 500), "in/a.csv")  # 5 files

    def verify() -> tuple[int, dict[str, Any], str]:
        code = run(["verify", "default.t", "--page-size", "2", "--json"])
        captured = capsys.readouterr()  # the server's request log shares stdout
        return code, cli_document(captured.out), captured.err

    for _ in range(2):  # a first pass, then a full pass again over verified files
        code, report, err = verify()
        assert code == 0, err
        assert (report["files_checked"], report["ok"], report["calls"]) == (5, 5, 3)
        assert report["remaining"] == 0

    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
    s3.put_object(Bucket=files[3].bucket, Key=files[3].key, Body=b"tampered")
    s3.delete_object(Bucket=files[4].bucket, Key=files[4].key)
    code, report, err = verify()
    assert code == 1
    assert "1 corrupt, 1 missing" in err
    assert report["files_checked"] == 5 and report["ok"] == 3
    assert [c["id"] for c in report["corrupt"]] == [files[3].id]
    assert [m["id"] for m in report["missing"]] == [files[4].id]
    rows, paths = catalog_rows(table_id)
    tbl = load(catalog_url, moto_server)
    assert file_paths(tbl) == paths and len(ids_pyiceberg(tbl)) == rows


def test_with_default_settings_a_compactions_replaced_files_outlive_an_optimize_an_hour_later(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default retention is days (Iceberg's 5): an optimize run an hour after a
    compaction (the clock moved on) deletes none of the files it replaced and expires
    none of the snapshots before it, so time travel still reads them."""
    import time
    import types

    from datalake.catalog.models import utcnow
    from datalake.services import sweep
    from datalake.services.optimize import optimize

    monkeypatch.delenv("DATALAKE_REPLACED_FILE_RETENTION_SECONDS", raising=False)
    get_settings.cache_clear()
    table_id = make_table()
    for k in range(3):
        run_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/{k}.csv")
    tbl = load(catalog_url, moto_server)
    snaps = tbl.snapshots()
    before = file_paths(tbl)
    assert optimize(table_id, store=store())["files_replaced"] == len(before)

    hour = 3600
    later = utcnow() + dt.timedelta(seconds=hour)
    monkeypatch.setattr(sweep, "utcnow", lambda: later)
    monkeypatch.setattr(iceberg, "time", types.SimpleNamespace(
        time=lambda: time.time() + hour, sleep=time.sleep, monotonic=time.monotonic))
    optimize(table_id, store=store())

    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE, Prefix="default/t/")
    lake = {f"s3://{LAKE}/{o['Key']}" for page in pages for o in page.get("Contents", [])}
    assert before <= lake  # every replaced file is still there
    tbl = load(catalog_url, moto_server)
    assert [s.snapshot_id for s in tbl.snapshots()[:3]] == [s.snapshot_id for s in snaps]
    assert ids_pyiceberg(tbl, snapshot_id=snaps[0].snapshot_id) == list(range(100))
    assert ids_pyiceberg(tbl, snapshot_id=snaps[2].snapshot_id) == list(range(300))
    assert ids_pyiceberg(tbl) == list(range(300))


def test_the_deployed_api_has_the_optimize_function_publish_what_verify_takes_out(
    s3: Any, catalog_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API Lambda carries no pyiceberg: with an optimize function configured, verify
    invokes it synchronously (``publish_only``), and its answer comes after the publish."""
    import importlib.util
    import io
    import json
    import types

    from starlette.testclient import TestClient

    from datalake.aws import lambdas
    from datalake.tokens import make_token
    from datalake_api.main import create_app

    table_id = make_table()
    run_job(s3, table_id, HEADER + csv_rows(0, 300), "in/a.csv")
    with session_scope() as session:
        bad = tables.committed_files(session, table_id)[0][0]
    s3.put_object(Bucket=bad.bucket, Key=bad.key, Body=b"tampered")

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "optimize_app", root / "functions" / "optimize" / "app.py")
    assert spec is not None and spec.loader is not None
    optimize_app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(optimize_app)
    context = types.SimpleNamespace(
        function_name="optimize", memory_limit_in_mb=1769, aws_request_id="req-1",
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:optimize",
        get_remaining_time_in_millis=lambda: 900_000)
    calls: list[dict[str, Any]] = []

    class OptimizeFunction:  # Lambda's synchronous invoke, run in this process
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(kwargs)
            out = optimize_app.lambda_handler(json.loads(kwargs["Payload"]), context)
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(out).encode())}

    monkeypatch.setattr(lambdas, "client", lambda service: OptimizeFunction())
    monkeypatch.setenv("DATALAKE_OPTIMIZE_FUNCTION", "optimize-fn")
    get_settings.cache_clear()
    headers = {"Authorization": f"Bearer {make_token('ops', ['writer'])}"}
    with TestClient(create_app(), raise_server_exceptions=False) as api:
        r = api.post(f"/api/v1/tables/{table_id}/verify", headers=headers)
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["corrupt"]] == [bad.id]
    assert r.json()["iceberg_published"] is True
    assert [(c["FunctionName"], c["InvocationType"]) for c in calls] == [
        ("optimize-fn", "RequestResponse")]
    assert json.loads(calls[0]["Payload"]) == {"table_id": table_id, "publish_only": True}
    tbl = load(catalog_url, moto_server)
    rows, paths = catalog_rows(table_id)
    assert file_paths(tbl) == paths and len(ids_pyiceberg(tbl)) == rows == 300 - bad.record_count


def test_an_empty_job_on_a_table_without_a_schema_ends_succeeded_and_published(
    s3: Any, catalog_url: str, moto_server: str
) -> None:
    """A prefix holding only a marker settles no schema and writes nothing: the job ends
    SUCCEEDED, and, as for every SUCCEEDED job, ``iceberg_published`` is true (there is
    nothing Iceberg does not show), so ``--wait`` does not wait for a publish that never
    comes."""
    table_id = make_table()
    s3.put_object(Bucket=LANDING, Key="only/_SUCCESS", Body=b"")
    with session_scope() as session:
        job = jobs.create_job(session, table_id=table_id, sources=[f"s3://{LANDING}/only/"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        job_id = job.id
    assert plan_and_run(job_id) == []
    jobs.publish_job(job_id, store=store())
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        assert (job.status, job.records_written) == ("SUCCEEDED", 0)
        assert jobs.iceberg_published(session, job) is True
