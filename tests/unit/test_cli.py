"""The CLI against a fake API (a local HTTP server in a thread): errors are one line on
stderr with a non-zero exit, profiles resolve in order, tables resolve by name, progress
is plain lines off a terminal, and no Lambda function imports typer or rich."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from typer.testing import CliRunner

from datalake.cli import app as cli_app
from datalake.cli.app import run
from datalake.cli.client import CliError, resolve_profile

ROOT = Path(__file__).resolve().parents[2]
Handler = Callable[[dict[str, Any], Any], tuple[int, Any]]


class FakeApi:
    """Canned answers by ``(method, path)``; records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler | tuple[int, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                req = {"method": self.command, "path": url.path,
                       "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                       "headers": dict(self.headers), "body": body}
                fake.requests.append(req)
                if self.headers.get("Authorization") != "Bearer good":
                    status, payload = 401, {"detail": "invalid token"}
                else:
                    missing = (404, {"detail": "Not Found"})
                    route = fake.routes.get((self.command, url.path), missing)
                    status, payload = route(req, body) if callable(route) else route
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeApi]:
    fake = FakeApi()
    for var in ("DATALAKE_API_URL", "DATALAKE_TOKEN", "DATALAKE_PROFILE", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATALAKE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("DATALAKE_API_URL", fake.url)
    monkeypatch.setenv("DATALAKE_TOKEN", "good")
    yield fake
    fake.server.shutdown()


def job(status: str, done: int = 0, total: int = 2, read: int = 0) -> dict[str, Any]:
    return {"id": "j1", "table_id": "t1", "status": status, "batches_total": total,
            "batches_succeeded": done, "batches_failed": 0, "records_read": read,
            "records_written": read, "records_rejected": 0, "error": None,
            "created_at": "2026-01-01T00:00:00", "started_at": "2026-01-01T00:00:00",
            "finished_at": None}


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    return lines[0]


def test_every_option_and_argument_has_help_text() -> None:
    import typer.main

    root = typer.main.get_command(cli_app.app)
    missing: list[str] = []

    def walk(cmd: Any, path: str) -> None:
        for p in cmd.params:
            if not getattr(p, "help", None) and p.name != "help":
                missing.append(f"{path} {p.name}")
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")
            if not sub.help:
                missing.append(f"{path} {name} (no command help)")

    walk(root, "datalake")
    assert not missing, missing
    # ... and every command takes --json.
    def commands(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name, sub in getattr(cmd, "commands", {}).items():
            if getattr(sub, "commands", None):
                yield from commands(sub, f"{path} {name}")
                if not sub.invoke_without_command:  # a bare group only prints its help
                    continue
            yield f"{path} {name}", sub

    without = [p for p, c in commands(root, "datalake")
               if "--json" not in {o for prm in c.params for o in prm.opts}]
    assert not without, without


def test_version_and_help_run_without_an_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("datalake ")
    result = CliRunner().invoke(cli_app.app, ["ingest", "--help"])
    assert result.exit_code == 0 and "--create" in result.output and "--wait" in result.output


def test_unreachable_api_is_one_line(capsys: pytest.CaptureFixture[str], api: FakeApi) -> None:
    api.server.shutdown()
    api.server.server_close()
    assert run(["tables", "list", "--json", "--api-url", api.url]) == 1
    assert "cannot reach the API" in one_error_line(capsys)


def test_a_refusal_is_one_line_with_the_status(
    capsys: pytest.CaptureFixture[str], api: FakeApi
) -> None:
    assert run(["--token", "bad", "jobs", "list", "--json"]) == 1
    line = one_error_line(capsys)
    assert "401" in line and "invalid token" in line
    api.routes[("POST", "/api/v1/tables/")] = (422, {"detail": [
        {"loc": ["body", "name"], "msg": "String should have at most 255 characters",
         "type": "string_too_long"}]})
    assert run(["tables", "create", "a.b", "--json"]) == 1
    assert "name: String should have at most 255" in one_error_line(capsys)


def test_usage_errors_are_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["jobs", "show"]) == 2
    assert "Missing argument" in one_error_line(capsys)
    assert run(["tables", "create", "nodots", "--api-url", "http://127.0.0.1:9"]) == 1
    assert "NAMESPACE.NAME" in one_error_line(capsys)


def test_a_bug_is_still_one_line_unless_debug(
    capsys: pytest.CaptureFixture[str], api: FakeApi
) -> None:
    api.routes[("GET", "/api/v1/ingestion/jobs/j1")] = (200, {"unexpected": True})
    assert run(["jobs", "watch", "j1"]) == 1
    assert "KeyError" in one_error_line(capsys)
    assert run(["--debug", "jobs", "watch", "j1"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_tables_resolve_by_namespace_and_name(
    capsys: pytest.CaptureFixture[str], api: FakeApi
) -> None:
    table = {"id": "t1", "namespace": "demo", "name": "flights"}
    api.routes[("GET", "/api/v1/tables/")] = (200, {"items": [
        {"id": "t0", "namespace": "demo", "name": "other"}, table], "total": 2})
    assert run(["tables", "show", "demo.flights", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "t1"
    listing = [r for r in api.requests if r["path"] == "/api/v1/tables/"][-1]
    assert listing["query"]["namespace"] == "demo"
    assert run(["tables", "show", "demo.nope", "--json"]) == 1
    assert "no table demo.nope" in one_error_line(capsys)
    # All calls of one command share one correlation id.
    ids = {r["headers"].get("X-Correlation-Id") for r in api.requests}
    assert len(ids) == 2 and all(i and i.startswith("cli-") for i in ids)


def test_watch_prints_progress_lines_off_a_terminal(
    capsys: pytest.CaptureFixture[str], api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    states = iter([job("RUNNING", 0, 0), job("RUNNING", 0, 2, 0),
                   {**job("SUCCEEDED", 2, 2, 1000), "finished_at": "2026-01-01T00:00:07"}])
    api.routes[("GET", "/api/v1/ingestion/jobs/j1")] = lambda req, body: (200, next(states))
    # While it runs, the job row's counters are not rolled up yet: its batches say how far.
    api.routes[("GET", "/api/v1/ingestion/jobs/j1/batches")] = (200, {"items": [
        {"status": "SUCCEEDED", "records_read": 500, "records_written": 500,
         "records_rejected": 0},
        {"status": "RUNNING", "records_read": 0, "records_written": 0, "records_rejected": 0},
    ], "total": 2})
    monkeypatch.setattr("datalake.cli.progress.POLL_S", 0.0)
    monkeypatch.setattr("datalake.cli.progress.time.sleep", lambda s: None)
    assert run(["jobs", "watch", "j1"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "job j1 RUNNING: batches 0/0, records read 0 written 0 rejected 0",
        "job j1 RUNNING: batches 1/2, records read 500 written 500 rejected 0",
        "job j1 SUCCEEDED: batches 2/2, records read 1,000 written 1,000 rejected 0",
    ]
    assert "SUCCEEDED" in captured.out and "7.0 s" in captured.out


def test_watch_follows_a_committing_job_until_it_succeeds(
    capsys: pytest.CaptureFixture[str], api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUNNING in its committing phase (committed, its Iceberg snapshot being published)
    is not an end: ``jobs watch`` and ``--wait`` go on until SUCCEEDED."""
    done = {**job("SUCCEEDED", 2, 2, 1000), "finished_at": "2026-01-01T00:00:07",
            "iceberg_published": True}
    states = iter([{**done, "status": "RUNNING", "phase": "committing",
                    "iceberg_published": False, "finished_at": None}, done])
    api.routes[("GET", "/api/v1/ingestion/jobs/j1")] = lambda req, body: (200, next(states))
    monkeypatch.setattr("datalake.cli.progress.POLL_S", 0.0)
    monkeypatch.setattr("datalake.cli.progress.time.sleep", lambda s: None)
    assert run(["jobs", "watch", "j1"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "job j1 RUNNING: batches 2/2, records read 1,000 written 1,000 rejected 0, "
        "publishing as Iceberg",
        "job j1 SUCCEEDED: batches 2/2, records read 1,000 written 1,000 rejected 0",
    ]


def test_watch_waits_for_a_succeeded_jobs_iceberg_snapshot(
    capsys: pytest.CaptureFixture[str], api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commit marks the job SUCCEEDED a moment before Iceberg shows it: following a job
    ends only once its rows can be read as Iceberg (or after a bounded wait)."""
    done = {**job("SUCCEEDED", 2, 2, 1000), "finished_at": "2026-01-01T00:00:07"}
    states = iter([{**done, "iceberg_published": False}, {**done, "iceberg_published": False},
                   {**done, "iceberg_published": True}])
    api.routes[("GET", "/api/v1/ingestion/jobs/j1")] = lambda req, body: (200, next(states))
    monkeypatch.setattr("datalake.cli.progress.POLL_S", 0.0)
    monkeypatch.setattr("datalake.cli.progress.time.sleep", lambda s: None)
    assert run(["jobs", "watch", "j1"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "job j1 SUCCEEDED: batches 2/2, records read 1,000 written 1,000 rejected 0, "
        "publishing as Iceberg",
        "job j1 SUCCEEDED: batches 2/2, records read 1,000 written 1,000 rejected 0",
    ]
    # Never published (Commit's retries ran out): the wait is bounded and says so.
    api.routes[("GET", "/api/v1/ingestion/jobs/j1")] = (200, {**done, "iceberg_published": False})
    monkeypatch.setattr("datalake.cli.progress.ICEBERG_WAIT_S", 0.0)
    assert run(["jobs", "watch", "j1"]) == 0
    assert "not yet published as Iceberg" in capsys.readouterr().err


def test_a_failed_job_exits_1_with_its_error_and_json_stays_parseable(
    capsys: pytest.CaptureFixture[str], api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.routes[("GET", "/api/v1/ingestion/jobs/j1")] = (
        200, {**job("FAILED"), "error": "ParquetError: not a parquet file"})
    assert run(["jobs", "watch", "j1", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "FAILED"
    assert captured.err.splitlines() == ["error: job j1 FAILED: ParquetError: not a parquet file"]


def test_ctrl_c_off_a_terminal_leaves_the_job_running_and_says_how_to_cancel(
    capsys: pytest.CaptureFixture[str], api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.routes[("GET", "/api/v1/ingestion/jobs/j1")] = (200, job("RUNNING"))

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("datalake.cli.progress.time.sleep", interrupt)
    assert run(["jobs", "watch", "j1", "--json"]) == 130
    assert "datalake jobs cancel j1" in one_error_line(capsys)
    assert not [r for r in api.requests if r["path"].endswith("/cancel")]
    # From a terminal it asks, and cancels when told to.
    api.routes[("POST", "/api/v1/ingestion/jobs/j1/cancel")] = (202, job("CANCELLED"))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    monkeypatch.setattr("typer.confirm", lambda *a, **k: True)
    assert run(["jobs", "watch", "j1", "--json"]) == 130
    assert one_error_line(capsys) == "error: job j1 cancelled"
    assert [r for r in api.requests if r["path"].endswith("/cancel")]


def test_profiles_flags_then_environment_then_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'default_profile = "prod"\n[profiles.prod]\napi_url = "https://prod.example"\n'
        'token_env = "PROD_TOKEN"\nlanding_bucket = "landing-prod"\n'
        '[profiles.mine]\nenv_file = "' + str(tmp_path / "mine.env") + '"\n'
    )
    (tmp_path / "mine.env").write_text("DATALAKE_API_URL='http://mine'\nDATALAKE_TOKEN=tok\n")
    env = {"DATALAKE_CONFIG": str(config), "PROD_TOKEN": "secret"}
    monkeypatch.setenv("DATALAKE_CONFIG", str(config))
    p = resolve_profile(environ=env)
    assert (p.name, p.api_url, p.token, p.landing_bucket) == (
        "prod", "https://prod.example", "secret", "landing-prod")
    p = resolve_profile("mine", environ=env)
    assert (p.api_url, p.token) == ("http://mine", "tok")
    p = resolve_profile(environ={**env, "DATALAKE_API_URL": "http://env"})
    assert p.api_url == "http://env"
    p = resolve_profile(api_url="http://flag", environ={**env, "DATALAKE_API_URL": "http://env"})
    assert p.api_url == "http://flag"
    with pytest.raises(CliError, match="no profile 'nope'"):
        resolve_profile("nope", environ=env)


def test_token_says_when_it_uses_the_development_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datalake.config import get_settings

    monkeypatch.delenv("DATALAKE_JWT_SECRET", raising=False)
    get_settings.cache_clear()
    assert run(["token", "--role", "reader"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count(".") == 2 and "development secret" in captured.err
    monkeypatch.setenv("DATALAKE_JWT_SECRET", "s" * 40)
    get_settings.cache_clear()
    try:
        assert run(["token", "--role", "writer", "--json"]) == 0
        captured = capsys.readouterr()
        assert json.loads(captured.out)["roles"] == ["writer"] and captured.err == ""
    finally:
        get_settings.cache_clear()
    assert run(["token", "--role", "root"]) == 1
    assert "unknown role" in one_error_line(capsys)


def test_migrate_needs_an_explicit_database_outside_the_local_stack(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("datalake.cli.client.REPO_ROOT", tmp_path)
    assert run(["migrate"]) == 1
    assert "--database-url" in one_error_line(capsys)
    (tmp_path / ".datalake").mkdir()
    local = tmp_path / "local.db"
    (tmp_path / ".datalake" / "local.env").write_text(f"DATABASE_URL=sqlite:///{local}\n")
    assert run(["migrate", "--json"]) == 0
    captured = capsys.readouterr()
    assert "local stack's own catalog" in captured.err and local.exists()
    explicit = tmp_path / "explicit.db"
    assert run(["migrate", "--database-url", f"sqlite:///{explicit}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["from"] == "--database-url" and explicit.exists()


def test_global_options_work_after_the_command(
    capsys: pytest.CaptureFixture[str], api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATALAKE_API_URL")
    api.routes[("GET", "/api/v1/ingestion/jobs")] = (200, {"items": [], "total": 0})
    assert run(["jobs", "list", "--json", "--api-url", api.url]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": [], "total": 0}


def test_query_without_duckdb_says_so(
    capsys: pytest.CaptureFixture[str], api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb -> ImportError
    assert run(["query", "SELECT 1 FROM demo.flights"]) == 1
    assert "needs DuckDB" in one_error_line(capsys)


@pytest.mark.parametrize("function", ["api", "plan", "ingest_batch", "commit", "abort",
                                      "trigger", "optimize"])
def test_no_function_imports_the_cli_or_its_libraries(function: str) -> None:
    code = (
        "import sys, app\n"
        "cli = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click')"
        " or m.startswith('datalake.cli'))\n"
        "assert not cli, cli\n"
    )
    paths = [ROOT / "functions" / function, ROOT / "layers" / "datalake"]
    if function == "api":
        paths.append(ROOT / "functions" / "api")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={"PYTHONPATH": ":".join(map(str, paths)), "PATH": "/usr/bin:/bin",
             "AWS_DEFAULT_REGION": "us-east-1"},
        cwd=ROOT / "functions" / function,
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_typer_is_importable_lazily() -> None:
    # datalake.cli itself (ApiClient for tests and scripts) must not pull typer in.
    code = "import sys, datalake.cli\nassert not {'typer', 'rich'} & set(sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert typer  # imported above for the CliRunner tests



def test_sources_add_sends_each_ignore_pattern(
    capsys: pytest.CaptureFixture[str], api: FakeApi
) -> None:
    api.routes[("GET", "/api/v1/tables/")] = (200, {"items": [
        {"id": "t1", "namespace": "demo", "name": "flights"}], "total": 1})
    api.routes[("POST", "/api/v1/sources")] = lambda req, body: (201, {**body, "id": "s1"})
    assert run(["sources", "add", "drop", "--table", "demo.flights", "--prefix", "drop/",
                "--bucket", "landing", "--ignore", "*.tmp", "--ignore", "staging/*",
                "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ignore"] == ["*.tmp", "staging/*"]


def test_ingest_create_takes_partition_fields_as_tables_create_does(
    capsys: pytest.CaptureFixture[str], api: FakeApi
) -> None:
    api.routes[("GET", "/api/v1/tables/")] = (200, {"items": [], "total": 0})
    api.routes[("POST", "/api/v1/tables/")] = lambda req, body: (201, {
        **body, "id": "t1"})
    api.routes[("POST", "/api/v1/ingestion/jobs")] = (201, job("PENDING"))
    api.routes[("POST", "/api/v1/ingestion/jobs/j1/start")] = (202, job("RUNNING"))
    assert run(["ingest", "s3://landing/a.csv", "--table", "demo.flights", "--create",
                "--partition", "time_hour:day:day", "--partition", "carrier", "--json"]) == 0
    (created,) = [r["body"] for r in api.requests if r["path"] == "/api/v1/tables/"
                  and r["method"] == "POST"]
    assert created["partitioning"] == [
        {"column": "time_hour", "transform": "day", "name": "day"},
        {"column": "carrier", "transform": "identity"}]
    # Without --create it would be lost: refused; on an existing table it must agree.
    capsys.readouterr()
    assert run(["ingest", "s3://landing/a.csv", "--table", "demo.flights",
                "--partition", "time_hour:day"]) == 1
    assert "applies to the table --create creates" in one_error_line(capsys)
    api.routes[("GET", "/api/v1/tables/")] = (200, {"items": [
        {"id": "t1", "namespace": "demo", "name": "flights",
         "partitioning": [{"column": "time_hour", "transform": "day", "name": "day"}]}],
        "total": 1})
    capsys.readouterr()
    assert run(["ingest", "s3://landing/a.csv", "--table", "demo.flights", "--create",
                "--partition", "carrier"]) == 1
    assert "exists with another partitioning" in one_error_line(capsys)
    assert run(["ingest", "s3://landing/a.csv", "--table", "demo.flights", "--create",
                "--partition", "time_hour:day", "--json"]) == 0


def test_the_summary_tells_the_jobs_files_from_the_tables_files_now(
    capsys: pytest.CaptureFixture[str], api: FakeApi
) -> None:
    done = {**job("SUCCEEDED", 2, 2, 1000), "files_written": 12,
            "finished_at": "2026-01-01T00:00:07"}
    api.routes[("GET", "/api/v1/ingestion/jobs/j1")] = (200, done)
    # compaction merged the job's 12 files into 5 since
    api.routes[("GET", "/api/v1/tables/t1/files")] = (200, {"items": [{}], "total": 5})
    assert run(["jobs", "watch", "j1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("files written by the job" in line and "12" in line for line in lines)
    assert any("files in the table now" in line and "5" in line for line in lines)
