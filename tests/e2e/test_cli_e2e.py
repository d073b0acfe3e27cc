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
from pathlib import Path
from typing import Any

import pytest

from datalake.tokens import make_token
from tests.e2e.test_ingest_e2e import Deployed, csv_rows, deployed

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
