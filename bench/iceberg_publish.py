"""What publishing a job as an Iceberg snapshot adds to Commit.

Runs a job through the real engine on moto's in-process S3 and a SQLite (or
``--database-url``) catalog, then times Commit's catalog transaction (``commit_job``)
and the Iceberg publish (``publish_table``: DataFiles from the stored footers, one
manifest, manifest list, metadata file, the SQL catalog's pointer swap) separately.

Cases: a 366-partition job (one year by day: 366 files) and a 2,500-file job (identity
on a column with 2,500 values). Each is run ``--reps`` times on a fresh table (the
second and later publishes of a table also read the previous manifest list);
medians are printed and written to ``.datalake/bench-iceberg.json``.

    .venv/bin/python bench/iceberg_publish.py [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "datalake"), str(ROOT / "functions" / "api")]
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.pop("AWS_ENDPOINT_URL", None)


def csv_days(rows_per_day: int = 20) -> bytes:
    import datetime as dt

    lines = ["id,ts,v"]
    start = dt.date(2024, 1, 1)
    n = 0
    for d in range(366):
        day = start + dt.timedelta(days=d)
        for h in range(rows_per_day):
            lines.append(f"{n},{day} {h % 24:02d}:00:00,{n % 97}")
            n += 1
    return ("\n".join(lines) + "\n").encode()


def csv_keys(keys: int = 2500, rows_per_key: int = 4) -> bytes:
    lines = ["id,k,v"]
    n = 0
    for k in range(keys):
        for _ in range(rows_per_key):
            lines.append(f"{n},{k},{n % 97}")
            n += 1
    return ("\n".join(lines) + "\n").encode()


def one(name: str, body: bytes, partitioning: list[dict[str, str]]) -> dict[str, float]:
    import boto3

    from datalake.aws.s3 import S3ObjectStore
    from datalake.catalog.db import session_scope
    from datalake.services import iceberg, jobs, tables
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch
    from tests.fakes import FakeOrchestrator

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket="landing", Key=f"{name}.csv", Body=body)
    with session_scope() as session:
        table = tables.create_table(session, name=name, partitioning=partitioning)
        job = jobs.create_job(session, table_id=table.id,
                              sources=[f"s3://landing/{name}.csv"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        table_id, job_id = table.id, job.id
    store = S3ObjectStore()
    plan = plan_job(job_id, store=store)
    for item in plan["batches"]:
        run_batch(job_id, item["batch_id"], store=store)
    t0 = time.perf_counter()
    with session_scope() as session:
        job = jobs.commit_job(session, job_id)
        files = job.files_written
    t1 = time.perf_counter()
    result = iceberg.publish_table(table_id)
    t2 = time.perf_counter()
    assert result.published, "nothing published"
    return {"files": files, "catalog_commit_s": t1 - t0, "iceberg_publish_s": t2 - t1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    from moto import mock_aws

    from datalake.aws import clients
    from datalake.catalog.migrate import upgrade
    from datalake.config import get_settings
    from datalake.services import iceberg

    tmp = tempfile.mkdtemp(prefix="dl-bench-ice-")
    url = args.database_url or f"sqlite:///{tmp}/catalog.db"
    os.environ["DATABASE_URL"] = url
    os.environ["DATALAKE_LAKE_BUCKET"] = "lake"
    # the jobs read this bench's own landing bucket (sources are checked against it)
    os.environ["DATALAKE_LANDING_BUCKET"] = "landing"
    upgrade(url)
    cases = {
        "366 partitions (day)": (csv_days(), [{"column": "ts", "transform": "day"}]),
        "2,500 files (identity)": (csv_keys(), [{"column": "k", "transform": "identity"}]),
    }
    out: list[dict[str, Any]] = []
    with mock_aws():
        import boto3

        get_settings.cache_clear()
        clients.reset()
        iceberg.reset()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lake")
        s3.create_bucket(Bucket="landing")
        for label, (body, spec) in cases.items():
            runs = [one(f"b{abs(hash(label)) % 10**6}_{r}", body, spec) for r in range(args.reps)]
            row = {
                "name": f"iceberg-publish {label}",
                "files": runs[0]["files"],
                "catalog_commit_s": statistics.median(r["catalog_commit_s"] for r in runs),
                "iceberg_publish_s": statistics.median(r["iceberg_publish_s"] for r in runs),
                "runs": runs,
            }
            out.append(row)
            print(f"{label:<24} files={row['files']:>5}  catalog commit "
                  f"{row['catalog_commit_s'] * 1000:8.1f} ms  Iceberg publish "
                  f"{row['iceberg_publish_s'] * 1000:8.1f} ms  (medians of {args.reps})",
                  flush=True)
    target = ROOT / ".datalake" / "bench-iceberg.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
