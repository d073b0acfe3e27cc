"""The migration custom resource: Alembic upgrade on Create/Update, idempotent, and an
answer to CloudFormation's pre-signed URL for every request type."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

ROOT = Path(__file__).resolve().parents[2]


def _load_handler() -> Any:
    spec = importlib.util.spec_from_file_location(
        "migrate_app", ROOT / "functions" / "migrate" / "app.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def cfn_responses() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/response", got
    finally:
        server.shutdown()


def _event(kind: str, url: str) -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/datalake/x",
        "RequestId": f"req-{kind}",
        "LogicalResourceId": "CatalogMigration",
        "PhysicalResourceId": "datalake-catalog",
        "ResourceProperties": {},
    }


def _context() -> Any:
    return SimpleNamespace(
        function_name="migrate",
        memory_limit_in_mb=128,
        aws_request_id="r",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:migrate",
    )


def test_create_update_and_delete_migrate_idempotently_and_answer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cfn_responses: tuple[str, list[dict[str, Any]]],
) -> None:
    url, got = cfn_responses
    db_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("DATABASE_URL", db_url)
    app = _load_handler()
    for kind in ("Create", "Update", "Update", "Delete"):  # a re-run changes nothing
        app.lambda_handler(_event(kind, url), _context())
    assert [r["Status"] for r in got] == ["SUCCESS"] * 4
    assert got[0]["LogicalResourceId"] == "CatalogMigration"
    engine = create_engine(db_url)
    assert "ingestion_jobs" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_a_failed_migration_answers_failed(
    monkeypatch: pytest.MonkeyPatch, cfn_responses: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = cfn_responses
    monkeypatch.setenv("DATABASE_URL", "postgresql+pg8000://u:p@127.0.0.1:1/none")
    app = _load_handler()
    app.lambda_handler(_event("Create", url), _context())
    assert got[-1]["Status"] == "FAILED" and "migration failed" in got[-1]["Reason"]
