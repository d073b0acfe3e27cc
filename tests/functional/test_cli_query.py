"""`datalake query` against the in-process API and moto's S3 server (issue 27, items 1-2).

The CLI's query reads each table through the services' projection by field id, streams
only the files (and columns) the query needs, and returns tz-aware values without pytz.
S3 is moto's server (as in test_iceberg.py) so pyiceberg can read the same objects.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from datalake.catalog.db import session_scope
from datalake.cli import lookups
from datalake.cli.client import ApiClient, CliError, Profile
from datalake.cli.query import parse_instant, run_query
from datalake.services import schemas, tables
from datalake.tokens import make_token
from tests.functional.test_iceberg import (  # noqa: F401  (fixtures)
    moto_server,
    plan_and_run,
    reader_catalog,
    run_job,
    s3,
    start_job,
    store,
)
from tests.functional.test_schema_evolution_e2e import BASE_SCHEMA, F1, F2, parquet


class InProcessApi(ApiClient):
    """The CLI's API client, answered by the app in this process."""

    def __init__(self, client: TestClient) -> None:
        super().__init__("http://testserver", make_token("cli", ["admin"]))
        self.client = client

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        r = self.client.request(method, path, json=body, headers=sent)
        return r.status_code, (r.json() if r.content else None)


@pytest.fixture
def cli(s3: Any, moto_server: str) -> Iterator[tuple[ApiClient, Profile]]:  # noqa: F811
    from datalake_api.main import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield InProcessApi(c), Profile(name="test", aws_endpoint_url=moto_server)


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of every S3 GetObject the query's client sends (downloads included)."""
    seen: list[str] = []
    real = lookups.s3_client

    def counting(profile: Profile) -> Any:
        client = real(profile)
        client.meta.events.register(
            "provide-client-params.s3.GetObject",
            lambda params, **_: seen.append(params["Key"]),
        )
        return client

    monkeypatch.setattr(lookups, "s3_client", counting)
    return seen


def make_table(name: str, **kw: Any) -> str:
    with session_scope() as session:
        return tables.create_table(session, name=name, namespace="nyc", **kw).id


def test_a_tz_aware_column_is_queried_without_pytz(
    s3: Any, cli: tuple[ApiClient, Profile]  # noqa: F811
) -> None:
    table_id = make_table("weather", partitioning=[{"column": "time_hour", "transform": "day"}])
    body = ("id,time_hour\n1,2013-01-01T05:00:00-05:00\n2,2013-01-01T07:00:00-05:00\n"
            "3,2013-01-01T20:00:00-05:00\n")  # 01:00 UTC on the 2nd: another day's file
    run_job(s3, table_id, body, "in/weather.csv")
    schema = cli[0].get(f"/api/v1/tables/{table_id}")["schema"]
    assert schema["fields"][1]["type"] == "timestamptz"
    got = run_query(*cli, "select time_hour from nyc.weather order by id limit 1", tables=[])
    assert got["columns"] == ["time_hour"]
    (value,), = got["rows"]
    assert value == dt.datetime(2013, 1, 1, 10, tzinfo=dt.UTC)

    later = "select id from nyc.weather where time_hour >= '2013-01-02 00:00:00+00'"
    got = run_query(*cli, later, tables=[])
    assert got["rows"] == [[3]]
    assert (got["tables"][0]["files"], got["tables"][0]["files_read"]) == (2, 1)


def test_query_reads_columns_by_field_id_as_iceberg_does(
    s3: Any, cli: tuple[ApiClient, Profile], catalog_url: str, moto_server: str  # noqa: F811
) -> None:
    table_id = make_table("evo", schema=BASE_SCHEMA, compatibility="NONE")
    for key, data in (("evo/f1.parquet", F1), ("evo/f2.parquet", F2)):  # f2 adds city
        run_job(s3, table_id, data, key)
    assert run_query(*cli, "select count(city) from nyc.evo", tables=[])["rows"] == [[2]]

    # Roll back to version 1 (city dropped): city is gone for query as for Iceberg.
    with session_scope() as session:
        v1 = next(v for v in schemas.history(session, table_id) if v.version == 1)
        schemas.apply_version(session, v1.id)
    with pytest.raises(CliError, match="city"):
        run_query(*cli, "select count(city) from nyc.evo", tables=[])

    # Re-add a column named city: a new field id, so f2's old city values are not it.
    with session_scope() as session:
        proposed = {"fields": [*BASE_SCHEMA["fields"], {"name": "city", "type": "string"}]}
        schemas.create_version(session, table_id, proposed)
    f3 = parquet({"id": pa.array([5], pa.int32()), "name": pa.array(["e"]),
                  "score": pa.array([5.5], pa.float32()),
                  "ts": pa.array([dt.datetime(2024, 1, 3, 10)], pa.timestamp("us")),
                  "city": pa.array(["Lima"])})
    run_job(s3, table_id, f3, "evo/f3.parquet")

    got = run_query(*cli, "select count(*), count(city) from nyc.evo", tables=[])["rows"]
    iceberg = reader_catalog(catalog_url, moto_server).load_table(("nyc", "evo")).scan().to_arrow()
    assert got == [[iceberg.num_rows, iceberg.num_rows - iceberg["city"].null_count]] == [[5, 1]]


def test_a_query_opens_only_the_files_it_needs(
    s3: Any, cli: tuple[ApiClient, Profile], gets: list[str]  # noqa: F811
) -> None:
    table_id = make_table("flights", partitioning=[{"column": "ts", "transform": "day"}])
    rows = "".join(f"{i},2013-01-{1 + i % 5:02d} {i % 24:02d}:00:00,{i % 7}\n" for i in range(100))
    run_job(s3, table_id, "id,ts,delay\n" + rows, "in/flights.csv")
    with session_scope() as session:
        files = tables.committed_files(session, table_id)[0]
    assert len(files) == 5  # one per day

    got = run_query(*cli, "select count(*) from nyc.flights where ts >= '2013-01-03' "
                          "and ts < '2013-01-04'", tables=[])
    assert got["rows"] == [[20]]
    assert len(set(gets)) == 1 and "ts_day=2013-01-03" in gets[0]
    assert got["tables"][0]["files_read"] == 1 and got["tables"][0]["files"] == 5

    gets.clear()  # the partition column, as Hive-partitioned reads showed it: no file opened
    got = run_query(*cli, "select ts_day, count(*) from nyc.flights where ts_day >= '2013-01-04' "
                          "group by 1 order by 1", tables=[])
    assert got["rows"] == [["2013-01-04", 20], ["2013-01-05", 20]]
    assert gets == [] and got["tables"][0]["files_read"] == 0

    got = run_query(*cli, "select id from nyc.flights limit 1", tables=[])
    assert len(got["rows"]) == 1 and len(set(gets)) == got["tables"][0]["files_read"] <= 2


def test_as_of_returns_the_rows_of_the_snapshot_current_then(
    s3: Any, cli: tuple[ApiClient, Profile]  # noqa: F811
) -> None:
    table_id = make_table("ontime")
    run_job(s3, table_id, "id,delay\n" + "".join(f"{i},{i % 9}\n" for i in range(100)), "in/a.csv")
    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    run_job(s3, table_id, "id,delay\n" + "".join(f"{i},1\n" for i in range(100, 150)), "in/b.csv")

    sql = "select count(*), max(id) from nyc.ontime"
    assert run_query(*cli, sql, tables=[])["rows"] == [[150, 149]]
    then = parse_instant(between.replace(tzinfo=None).isoformat())  # no zone: UTC
    assert run_query(*cli, sql, tables=[], as_of=then)["rows"] == [[100, 99]]
    with pytest.raises(CliError, match="no snapshot at or before"):
        run_query(*cli, sql, tables=[], as_of=then - dt.timedelta(days=1))


def test_a_file_missing_from_the_lake_is_a_one_line_error(
    s3: Any, cli: tuple[ApiClient, Profile]  # noqa: F811
) -> None:
    from tests.fakes import LAKE

    table_id = make_table("gone")
    run_job(s3, table_id, "id,delay\n1,2\n", "in/gone.csv")
    with session_scope() as session:
        (f,), _ = tables.committed_files(session, table_id)
    s3.delete_object(Bucket=LAKE, Key=f.key)
    with pytest.raises(CliError) as raised:
        run_query(*cli, "select count(delay) from nyc.gone", tables=[])
    assert str(raised.value) == f"query failed: s3://{LAKE}/{f.key} does not exist"


EXIT_AFTER_LIMIT = """
import sys, duckdb, pyarrow as pa, pyarrow.parquet as pq
from datalake.cli.query import ListedFile, table_scan
from datalake.domain.schema import Schema
from datalake.engine.arrow_schema import to_arrow_schema
from datalake.engine.store import LocalObjectStore
from datalake.services.reading import FileRef

root = sys.argv[1]
schema = Schema.from_json({"fields": [{"id": 1, "name": "id", "type": "long"}]})
store = LocalObjectStore(root)
files = []
for i in range(40):
    data = pa.table({"id": pa.array(range(i * 1000, i * 1000 + 1000), pa.int64())},
                    schema=to_arrow_schema(schema))
    store.put_bytes("lake", f"t/{i:03d}.parquet", b"")
    pq.write_table(data, f"{root}/lake/t/{i:03d}.parquet")
    files.append(ListedFile(FileRef("lake", f"t/{i:03d}.parquet", None, None)))
con = duckdb.connect()
con.register("t", table_scan(schema, files, store, []))
print(con.execute("select id from t limit 1").arrow().read_all().num_rows)
# no con.close(): the interpreter exits with the scan unfinished
"""


def test_an_unfinished_scan_does_not_abort_the_interpreter_at_exit(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{root}/layers/datalake", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", EXIT_AFTER_LIMIT, str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr[-2000:]
