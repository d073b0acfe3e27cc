"""Short ids (the 8-character prefixes the CLI and the demo print) resolve in every route
and command that takes an id, through the in-process API on both catalogs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from datalake.catalog.db import session_scope
from datalake.catalog.models import IngestionJob
from datalake.cli.app import run
from datalake.tokens import make_token
from datalake_api import deps
from datalake_api.main import create_app
from tests.fakes import FakeDeleter, FakeOrchestrator, cli_document, cli_through_app

ADMIN = {"Authorization": "Bearer " + make_token("tester", ["admin"])}
SCHEMA = {"fields": [{"name": "id", "type": "long"}]}


@pytest.fixture
def client(use_catalog: str) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[deps.get_orchestrator] = FakeOrchestrator
    app.dependency_overrides[deps.get_sweeper] = FakeDeleter
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def made(client: TestClient) -> dict[str, str]:
    """A table with a schema version, a job and a source: their whole ids."""
    r = client.post("/api/v1/tables/", json={"name": "flights", "namespace": "demo",
                                             "schema": SCHEMA}, headers=ADMIN)
    assert r.status_code == 201, r.text
    table_id = r.json()["id"]
    version = client.get(f"/api/v1/schema/versions/table/{table_id}/current", headers=ADMIN)
    job = client.post("/api/v1/ingestion/jobs", headers=ADMIN,
                      json={"table_id": table_id, "sources": ["s3://landing/a.csv"]})
    assert job.status_code == 201, job.text
    source = client.post("/api/v1/sources", headers=ADMIN, json={
        "name": "drop", "table_id": table_id, "bucket": "landing", "prefix": "drop/"})
    assert source.status_code == 201, source.text
    return {"table": table_id, "version": version.json()["id"], "job": job.json()["id"],
            "source": source.json()["id"]}


def test_an_8_character_prefix_names_its_job_table_source_and_schema_version(
    client: TestClient,
) -> None:
    ids = made(client)
    table, job, version = ids["table"][:8], ids["job"][:8], ids["version"][:8]
    reads = {
        f"/api/v1/tables/{table}": ids["table"],
        f"/api/v1/tables/{table.upper()}": ids["table"],
        f"/api/v1/ingestion/jobs/{job}": ids["job"],
        f"/api/v1/ingestion/jobs/{ids['job'][:13]}": ids["job"],  # with its first dash
        f"/api/v1/schema/versions/{version}": ids["version"],
        f"/api/v1/schema/versions/table/{table}/current": ids["version"],
        f"/api/v1/sources/{ids['source'][:8]}": ids["source"],
    }
    for path, whole in reads.items():
        r = client.get(path, headers=ADMIN)
        assert r.status_code == 200 and r.json()["id"] == whole, (path, r.status_code, r.text)
    for path in (f"/api/v1/ingestion/jobs/{job}/batches", f"/api/v1/tables/{table}/files",
                 f"/api/v1/partitions/table/{table}", f"/api/v1/schema/versions/table/{table}"):
        r = client.get(path, headers=ADMIN)
        assert r.status_code == 200, (path, r.text)
    started = client.post(f"/api/v1/ingestion/jobs/{job}/start", headers=ADMIN)
    assert started.status_code == 202 and started.json()["id"] == ids["job"], started.text
    cancelled = client.post(f"/api/v1/ingestion/jobs/{job}/cancel", headers=ADMIN)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLED"


def test_an_ambiguous_prefix_is_a_409_and_a_short_one_a_404_that_says_why(
    client: TestClient,
) -> None:
    table_id = made(client)["table"]
    with session_scope() as session:
        for n in (1, 2):
            session.add(IngestionJob(id=f"abcdef01-0000-4000-8000-00000000000{n}",
                                     table_id=table_id, sources=["s3://landing/a.csv"]))
    r = client.get("/api/v1/ingestion/jobs/abcdef01", headers=ADMIN)
    assert r.status_code == 409 and "ambiguous" in r.json()["detail"], r.text
    assert "abcdef01-0000-4000-8000-000000000001" in r.json()["detail"]
    longer = client.get("/api/v1/ingestion/jobs/abcdef01-0000-4000-8000-000000000002",
                        headers=ADMIN)
    assert longer.status_code == 200
    short = client.get("/api/v1/ingestion/jobs/abcdef0", headers=ADMIN)
    assert short.status_code == 404 and "at least 8" in short.json()["detail"], short.text
    none = client.get("/api/v1/ingestion/jobs/00000000", headers=ADMIN)
    assert none.status_code == 404 and "no job has an id starting with" in none.text
    # Without a valid token nothing about ids is told.
    assert client.get("/api/v1/ingestion/jobs/abcdef01").status_code == 401


def test_cli_commands_take_the_short_ids_they_print(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = made(client)
    cli_through_app(client, monkeypatch, ADMIN)
    capsys.readouterr()  # what setting up printed (the API's request log) is not the CLI's
    assert run(["jobs", "show", ids["job"][:8], "--batches", "--json"]) == 0
    assert cli_document(capsys.readouterr().out)["id"] == ids["job"]
    assert run(["tables", "show", ids["table"][:8], "--json"]) == 0
    assert cli_document(capsys.readouterr().out)["id"] == ids["table"]
    assert run(["schema", "history", ids["table"][:8], "--json"]) == 0
    assert cli_document(capsys.readouterr().out)["items"][0]["id"] == ids["version"]
    assert run(["jobs", "cancel", ids["job"][:8], "--json"]) == 0
    assert cli_document(capsys.readouterr().out)["status"] == "CANCELLED"
    assert run(["sources", "delete", ids["source"][:8], "--json"]) == 0
    assert cli_document(capsys.readouterr().out)["enabled"] is False
    assert run(["jobs", "show", ids["job"][:6]]) == 1
    assert "at least 8 hex characters" in capsys.readouterr().err
