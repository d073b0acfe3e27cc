"""The ``datalake`` command, run for real in a subprocess against the deployed local stack.

Each call is ``.venv/bin/datalake`` (the console script) with a profile in a config file
of its own, so these tests go through what a user runs: argument parsing, the profile,
the upload to the landing bucket with boto3, the API through API Gateway, and the job
through Step Functions and the workers. Every error path must exit non-zero with exactly
one line on stderr (no traceback), with and without ``--json``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from datalake.tokens import make_token
from tests.e2e.test_ingest_e2e import Deployed, csv_rows, deployed, wait_first_job

pytestmark = [pytest.mark.localstack, pytest.mark.postgres]
__all__ = ["deployed"]

ROOT = Path(__file__).resolve().parents[2]
CLI = [str(Path(sys.executable).with_name("datalake"))]
SCHEMA = {
    "fields": [
        {"name": "id", "type": "long", "nullable": False},
        {"name": "event_time", "type": "timestamp"},
        {"name": "carrier", "type": "string"},
        {"name": "amount", "type": "double"},
    ]
}


@pytest.fixture(scope="module")
def cli_env(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose default profile is the deployed e2e stack."""
    home = tmp_path_factory.mktemp("cli-home")
    config = home / "config.toml"
    config.write_text(
        'default_profile = "e2e"\n[profiles.e2e]\n'
        f'api_url = "{deployed.outputs["ApiUrl"]}"\n'
        f'token = "{make_token("cli-e2e", ["admin"])}"\n'
        f'aws_endpoint_url = "{deployed.stack.ENDPOINT}"\n'
        f'landing_bucket = "{deployed.landing}"\n'
        f'lake_bucket = "{deployed.lake}"\n'
        'region = "us-east-1"\n'
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATALAKE_", "AWS_ENDPOINT")) and k != "DATABASE_URL"
    }
    env.update({"DATALAKE_CONFIG": str(config), "HOME": str(home), "COLUMNS": "160"})
    return env


def run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the CLI; stdin is not a terminal, nor are stdout and stderr (pipes)."""
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, cwd=ROOT,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the run failed with exactly one line on stderr (no traceback); return it."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def test_ingest_a_local_csv_with_wait_json_prints_exact_counts(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    created = ok_json(run(cli_env, "tables", "create", "e2e.cli_csv", "--schema",
                          json.dumps(SCHEMA), "--partition", "event_time:day:day", "--json"))
    assert created["namespace"] == "e2e" and created["name"] == "cli_csv"
    data = tmp_path / "events.csv"
    data.write_bytes(csv_rows(3000, bad_every=500))  # 6 records with amount "oops"
    job = ok_json(run(cli_env, "ingest", str(data), "--table", "e2e.cli_csv", "--wait",
                      "--json", "--option", "split_size_mb=0.05"))
    assert job["status"] == "SUCCEEDED", job
    assert (job["records_read"], job["records_written"], job["records_rejected"]) == (3000, 2994, 6)
    assert job["batches_total"] > 1 and job["batches_succeeded"] == job["batches_total"]
    uploaded = job["sources"][0]
    assert uploaded.startswith("s3://") and "/cli-uploads/e2e/cli_csv/" in uploaded

    rejected = ok_json(run(cli_env, "rejects", job["id"], "--json"))
    assert rejected["total"] == 6
    assert {r["column"] for r in rejected["items"]} == {"amount"}
    assert {r["value"] for r in rejected["items"]} == {"oops"}

    result = ok_json(run(cli_env, "query", "SELECT count(*) AS n, count(DISTINCT day) AS days "
                                           "FROM e2e.cli_csv", "--json"))
    assert result["columns"] == ["n", "days"] and result["rows"] == [[2994, 3]]

    # --create makes a table (schema inferred) for a name that does not exist yet.
    small = tmp_path / "small.csv"
    small.write_bytes(csv_rows(40))
    job = ok_json(run(cli_env, "ingest", str(small), "--table", "e2e.cli_created", "--create",
                      "--wait", "--json"))
    assert (job["status"], job["records_read"], job["records_written"]) == ("SUCCEEDED", 40, 40)
    shown = ok_json(run(cli_env, "tables", "show", "e2e.cli_created", "--json"))
    assert shown["id"] == job["table_id"]


def test_progress_output_in_a_non_tty_run(cli_env: dict[str, str], tmp_path: Path) -> None:
    ok_json(run(cli_env, "tables", "create", "e2e.cli_progress", "--schema", json.dumps(SCHEMA),
                "--json"))
    data = tmp_path / "progress.csv"
    data.write_bytes(csv_rows(2000))
    result = run(cli_env, "ingest", str(data), "--table", "e2e.cli_progress", "--wait",
                 "--option", "split_size_mb=0.03")
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("job ")]
    # One plain line per change (no bar, no terminal control codes), the last one final.
    assert len(lines) >= 2, result.stderr
    assert "\x1b[" not in result.stderr
    assert "SUCCEEDED: batches" in lines[-1] and "read 2,000 written 2,000 rejected 0" in lines[-1]
    done, total = lines[-1].split("batches ")[1].split(",")[0].split("/")
    assert done == total and int(total) > 1
    # stdout holds the summary table.
    assert "SUCCEEDED" in result.stdout and "records written" in result.stdout
    assert "2,000" in result.stdout


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_every_error_path_is_one_line_and_a_nonzero_exit(
    cli_env: dict[str, str], tmp_path: Path, as_json: bool
) -> None:
    j = ["--json"] if as_json else []
    data = tmp_path / "ok.csv"
    data.write_bytes(csv_rows(10))

    # The stack down: nothing listens at the API's address.
    down = one_line_error(run(cli_env, "--api-url", f"http://127.0.0.1:{closed_port()}",
                              "tables", "list", *j))
    assert "cannot reach the API" in down
    down = one_line_error(run(cli_env, "ingest", str(data), "--table", "e2e.x",
                              "--api-url", f"http://127.0.0.1:{closed_port()}", *j))
    assert "cannot reach the API" in down

    # A bad token: the API refuses it.
    bad = one_line_error(run(cli_env, "--token", "not-a-token", "jobs", "list", *j))
    assert "401" in bad and "invalid token" in bad

    # A missing table.
    missing = one_line_error(run(cli_env, "ingest", str(data), "--table", "e2e.no_such_table",
                                 *j))
    assert "no table e2e.no_such_table" in missing
    assert "no table" in one_line_error(run(cli_env, "tables", "show", "e2e.no_such_table", *j))

    # A bad file: one that does not exist, and one the job cannot read.
    ok_json(run(cli_env, "tables", "create", f"e2e.cli_bad_{int(as_json)}", "--json"))
    nofile = one_line_error(run(cli_env, "ingest", str(tmp_path / "nope.csv"), "--table",
                                f"e2e.cli_bad_{int(as_json)}", *j))
    assert "no such file" in nofile
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet" * 100)
    result = run(cli_env, "ingest", str(broken), "--table", f"e2e.cli_bad_{int(as_json)}",
                 "--wait", "--max-retries", "0", *j)
    line = one_line_error(result) if as_json else result.stderr.splitlines()[-1]
    assert result.returncode == 1
    assert "FAILED" in line
    if as_json:
        assert json.loads(result.stdout)["status"] == "FAILED"


# --- A first day with real-looking data (issue 27), each through the commands a user types.


def ingest_file(
    env: dict[str, str], path: Path, data: bytes, table: str, *extra: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``datalake ingest PATH --table T ... --wait --json``: the run and the job it printed."""
    path.write_bytes(data)
    result = run(env, "ingest", str(path), "--table", table, *extra, "--wait", "--json")
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def test_pandas_timestamps_partition_by_day_and_a_tz_aware_column_is_queried(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Items 1 and 3: pandas' default JSON Lines timestamps (milliseconds, ``Z``) infer as
    timestamps and partition by day; a ``timestamptz`` column is read by ``query``."""
    lines = [json.dumps({"id": i, "time_hour": f"2013-01-0{1 + i % 3}T10:00:00.000Z",
                         "temp": 1.5 * i}) for i in range(90)]
    _, job = ingest_file(cli_env, tmp_path / "weather.jsonl", "\n".join(lines).encode(),
                         "day1.weather", "--create", "--partition", "time_hour:day:day")
    assert (job["status"], job["records_written"]) == ("SUCCEEDED", 90), job
    days = ok_json(run(cli_env, "query", "SELECT count(DISTINCT day) AS d, count(*) AS n "
                                         "FROM day1.weather", "--json"))
    assert days["rows"] == [[3, 90]]

    schema = {"fields": [{"name": "id", "type": "long", "nullable": False},
                         {"name": "ts", "type": "timestamptz"}]}
    ok_json(run(cli_env, "tables", "create", "day1.tz", "--schema", json.dumps(schema), "--json"))
    rows = "\n".join(json.dumps({"id": i, "ts": "2013-01-01T10:00:00+02:00"}) for i in range(5))
    _, job = ingest_file(cli_env, tmp_path / "tz.jsonl", rows.encode(), "day1.tz")
    assert job["status"] == "SUCCEEDED", job
    got = ok_json(run(cli_env, "query", "SELECT ts FROM day1.tz LIMIT 1", "--json"))
    assert len(got["rows"]) == 1 and "08:00" in str(got["rows"][0][0])  # 10:00+02:00 in UTC


def test_a_partition_on_a_missing_column_fails_at_plan_and_leaves_no_schema_version(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Item 3: the job fails at Plan with its own message; the table keeps no version, so
    a later good job settles its own schema."""
    result, job = ingest_file(cli_env, tmp_path / "a.csv", csv_rows(20), "day1.nopart",
                              "--create", "--partition", "nosuch:day")
    assert result.returncode == 1 and job["status"] == "FAILED", job
    assert "nosuch" in job["error"] and "not succeeded" not in job["error"], job["error"]
    assert job["batches_total"] == 0, job
    history = ok_json(run(cli_env, "schema", "history", "day1.nopart", "--json"))
    assert history["items"] == [], history


def test_a_frozen_tables_mismatch_is_the_jobs_error_and_is_attempted_once(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Item 4: the job's error is its batch's own, and a deterministic error is not retried."""
    frozen = {"fields": [f for f in SCHEMA["fields"] if f["name"] != "amount"]}
    ok_json(run(cli_env, "tables", "create", "day1.frozen", "--schema", json.dumps(frozen),
                "--policy", "freeze", "--json"))
    result, job = ingest_file(cli_env, tmp_path / "f.csv", csv_rows(30), "day1.frozen")
    assert result.returncode == 1 and job["status"] == "FAILED", job
    assert job["error"].startswith("SchemaMismatch"), job["error"]
    shown = ok_json(run(cli_env, "jobs", "show", job["id"][:8], "--batches", "--json"))
    assert shown["id"] == job["id"]  # item 13: the short id the progress lines print
    assert [b["attempts"] for b in shown["batches"]] == [1], shown["batches"]


def test_a_short_row_at_the_top_is_quarantined_and_a_gated_jobs_rejects_stay_readable(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Items 5 and 6: a row with the wrong field count in the first bytes is quarantined,
    not a failed job; a job refused by ``max_rejected_ratio`` keeps its quarantine."""
    header, *body = csv_rows(60).decode().splitlines(keepends=True)
    data = (header + "7,short\n" + "".join(body)).encode()
    _, job = ingest_file(cli_env, tmp_path / "top.csv", data, "day1.short", "--create")
    assert job["status"] == "SUCCEEDED", job
    assert (job["records_read"], job["records_written"], job["records_rejected"]) == (61, 60, 1)

    ok_json(run(cli_env, "tables", "create", "day1.gated", "--schema", json.dumps(SCHEMA),
                "--max-rejected-ratio", "0.05", "--json"))
    result, job = ingest_file(cli_env, tmp_path / "g.csv", csv_rows(100, bad_every=10),
                              "day1.gated")
    assert result.returncode == 1 and job["status"] == "FAILED", job
    rejected = ok_json(run(cli_env, "rejects", job["id"], "--json"))
    assert rejected["total"] == 10 and {r["column"] for r in rejected["items"]} == {"amount"}


def test_verify_covers_every_file_and_fails_on_a_tampered_one(
    deployed: Deployed, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Item 9: ``datalake verify`` checks the whole table (pages of 2 here) and exits 1 when
    a file is damaged."""
    ok_json(run(cli_env, "tables", "create", "day1.verified", "--schema", json.dumps(SCHEMA),
                "--partition", "event_time:day:day", "--json"))
    _, job = ingest_file(cli_env, tmp_path / "v.csv", csv_rows(300), "day1.verified")
    assert job["status"] == "SUCCEEDED", job
    files = ok_json(run(cli_env, "files", "day1.verified", "--json"))["items"]
    assert len(files) == 3
    report = ok_json(run(cli_env, "verify", "day1.verified", "--page-size", "2", "--json"))
    assert (report["files_checked"], report["ok"], report["remaining"]) == (3, 3, 0), report
    bucket, key = files[0]["path"].removeprefix("s3://").split("/", 1)
    deployed.stack.client("s3").put_object(Bucket=bucket, Key=key, Body=b"not parquet")
    damaged = run(cli_env, "verify", "day1.verified", "--page-size", "2", "--json")
    assert damaged.returncode == 1, damaged.stdout
    assert [f["path"] for f in json.loads(damaged.stdout)["corrupt"]] == [files[0]["path"]]


def test_marker_and_folder_uploads_start_no_job(
    deployed: Deployed, cli_env: dict[str, str]
) -> None:
    """Item 10: under a source's prefix, ``_SUCCESS``, a folder key, a ``.crc`` file and an
    ignored glob start nothing; the data file beside them starts exactly one job."""
    table = ok_json(run(cli_env, "tables", "create", "day1.dropped", "--schema",
                        json.dumps(SCHEMA), "--json"))
    ok_json(run(cli_env, "sources", "add", "day1-drop", "--table", "day1.dropped",
                "--prefix", "day1/drop/", "--ignore", "*.tmp", "--json"))
    s3 = deployed.stack.client("s3")
    for key, body in [("_SUCCESS", b""), ("sub/", b""), ("part.csv.crc", b"crc"),
                      ("upload.csv.tmp", csv_rows(5)), ("part-0.csv", csv_rows(25))]:
        s3.put_object(Bucket=deployed.landing, Key=f"day1/drop/{key}", Body=body)
    job = wait_first_job(deployed, table["id"])
    assert job["status"] == "SUCCEEDED" and job["records_written"] == 25, job
    time.sleep(5)  # the trigger queue has had every event by now; none may add a job
    listed = ok_json(run(cli_env, "jobs", "list", "--table", "day1.dropped", "--json"))
    assert listed["total"] == 1, listed["items"]


def test_a_parquet_file_read_as_csv_fails_with_a_printable_message(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Item 12: the error quotes no raw binary, on the terminal nor in the job."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(100)), "v": ["x" * 20] * 100}), buf)
    result, job = ingest_file(cli_env, tmp_path / "p.parquet", buf.getvalue(), "day1.binary",
                              "--create", "--format", "csv")
    assert result.returncode == 1
    text = result.stderr + (job.get("error") or "")
    assert text and all(c.isprintable() or c in "\n\t" for c in text), repr(text)
