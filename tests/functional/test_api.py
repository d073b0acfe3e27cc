"""The HTTP API on a real catalog (SQLite and Postgres), through FastAPI's test client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from datalake.tokens import make_token
from datalake_api import deps
from datalake_api.main import create_app
from tests.fakes import FakeDeleter, FakeOrchestrator


@pytest.fixture
def orchestrator() -> FakeOrchestrator:
    return FakeOrchestrator()


@pytest.fixture
def client(use_catalog: str, orchestrator: FakeOrchestrator) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[deps.get_orchestrator] = lambda: orchestrator
    app.dependency_overrides[deps.get_sweeper] = lambda: FakeDeleter()
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def auth(*roles: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + make_token("tester", list(roles))}


ADMIN = auth("admin")
SCHEMA = {"fields": [{"name": "id", "type": "long"}, {"name": "ts", "type": "timestamp"}]}


def make_table(client: TestClient, name: str = "events") -> dict[str, Any]:
    r = client.post(
        "/api/v1/tables/",
        json={
            "name": name,
            "schema": SCHEMA,
            "partitioning": [{"column": "ts", "transform": "day"}],
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_health_needs_no_token(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["catalog"] == "ok"


def test_table_lifecycle(client: TestClient) -> None:
    table = make_table(client)
    assert table["current_schema_version"] == 1
    assert [f["id"] for f in table["schema"]["fields"]] == [1, 2]
    assert table["partitioning"] == [{"column": "ts", "transform": "day", "name": "ts_day"}]
    got = client.get(f"/api/v1/tables/{table['id']}", headers=auth("reader")).json()
    assert got["name"] == "events"
    listing = client.get("/api/v1/tables/?limit=10", headers=auth("reader")).json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == table["id"]
    r = client.put(f"/api/v1/tables/{table['id']}", json={"schema_policy": "freeze"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["schema_policy"] == "freeze"
    assert client.delete(f"/api/v1/tables/{table['id']}", headers=ADMIN).status_code == 200
    assert client.get(f"/api/v1/tables/{table['id']}", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/tables/", headers=ADMIN).json()["total"] == 0
    # The name is free again after a soft delete.
    make_table(client)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "bad name!"}, 422),
        ({"name": "t", "schema": {"fields": [{"name": "a", "type": "varchar2"}]}}, 422),
        ({"name": "t", "schema": {"fields": "nope"}}, 422),
        ({"name": "t", "partitioning": [{"column": "x", "transform": "bucket[0]"}]}, 422),
        (
            {"name": "t", "schema": SCHEMA, "partitioning": [{"column": "zz", "transform": "day"}]},
            422,
        ),
        ({"name": "t", "schema_policy": "whatever"}, 422),
        ({"name": "t", "compatibility": "SIDEWAYS"}, 422),
        ({"name": "t", "format": {"compression": "rar"}}, 422),
        ({"nme": "t"}, 422),
    ],
)
def test_bad_table_input_is_a_clear_4xx(
    client: TestClient, body: dict[str, Any], status: int
) -> None:
    r = client.post("/api/v1/tables/", json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    assert "detail" in r.json()
    assert "Traceback" not in r.text


def test_duplicate_table_is_409(client: TestClient) -> None:
    make_table(client)
    r = client.post("/api/v1/tables/", json={"name": "events"}, headers=ADMIN)
    assert r.status_code == 409


def test_auth_and_roles(client: TestClient) -> None:
    assert client.get("/api/v1/tables/").status_code == 401
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert client.get("/api/v1/tables/", headers=bad).status_code == 401
    expired = {"Authorization": "Bearer " + make_token("x", ["admin"], ttl_seconds=-10)}
    assert client.get("/api/v1/tables/", headers=expired).status_code == 401
    assert (
        client.post("/api/v1/tables/", json={"name": "t"}, headers=auth("writer")).status_code
        == 403
    )
    assert client.get("/api/v1/tables/", headers=auth("reader")).status_code == 200


def test_jobs_create_start_list_cancel(client: TestClient, orchestrator: FakeOrchestrator) -> None:
    table = make_table(client)
    writer = auth("writer")
    r = client.post(
        "/api/v1/ingestion/jobs",
        json={
            "table_id": table["id"],
            "sources": ["s3://landing/a.csv"],
            "options": {"batch_size": 500},
        },
        headers=writer,
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "PENDING" and job["options"]["batch_size"] == 500
    assert job["options"]["split_size_mb"] == 128
    r = client.post(f"/api/v1/ingestion/jobs/{job['id']}/start", headers=writer)
    assert r.status_code == 202 and r.json()["status"] == "RUNNING"
    assert orchestrator.started == [job["id"]]
    assert (
        client.post(f"/api/v1/ingestion/jobs/{job['id']}/start", headers=writer).status_code == 409
    )
    listing = client.get(f"/api/v1/ingestion/jobs?table_id={table['id']}", headers=writer).json()
    assert listing["total"] == 1
    assert (
        client.get("/api/v1/ingestion/jobs?status=SUCCEEDED", headers=writer).json()["total"] == 0
    )
    assert client.get("/api/v1/ingestion/jobs?status=bogus", headers=writer).status_code == 422
    r = client.post(f"/api/v1/ingestion/jobs/{job['id']}/cancel", headers=writer)
    assert r.status_code == 202 and r.json()["status"] == "CANCELLED"
    assert orchestrator.stopped
    assert (
        client.post(f"/api/v1/ingestion/jobs/{job['id']}/cancel", headers=writer).status_code == 409
    )
    batches = client.get(f"/api/v1/ingestion/jobs/{job['id']}/batches", headers=writer).json()
    assert batches == {"items": [], "total": 0}


@pytest.mark.parametrize(
    "body",
    [
        {"sources": []},
        {"sources": ["http://example.com/x.csv"]},
        {"sources": ["s3://b/k"], "format": "xlsx"},
        {"sources": ["s3://b/k"], "options": {"batch_size": 0}},
        {"sources": ["s3://b/k"], "options": {"upload_concurrency": 0}},
        {"sources": ["s3://b/k"], "options": {"upload_concurrency": "eight"}},
        {"sources": ["s3://b/k"], "max_retries": 99},
        {"sources": ["s3://b/k"], "timeout_seconds": 1},
    ],
)
def test_bad_job_input(client: TestClient, body: dict[str, Any]) -> None:
    table = make_table(client)
    r = client.post("/api/v1/ingestion/jobs", json={"table_id": table["id"], **body}, headers=ADMIN)
    assert r.status_code == 422, r.text


def test_job_for_unknown_or_deleted_table_is_404(client: TestClient) -> None:
    r = client.post(
        "/api/v1/ingestion/jobs", json={"table_id": "nope", "sources": ["s3://b/k"]}, headers=ADMIN
    )
    assert r.status_code == 404
    table = make_table(client)
    client.delete(f"/api/v1/tables/{table['id']}", headers=ADMIN)
    r = client.post(
        "/api/v1/ingestion/jobs",
        json={"table_id": table["id"], "sources": ["s3://b/k"]},
        headers=ADMIN,
    )
    assert r.status_code == 404
    assert client.get("/api/v1/ingestion/jobs/nope", headers=ADMIN).status_code == 404


def test_sources(client: TestClient) -> None:
    table = make_table(client)
    body = {"name": "drop", "table_id": table["id"], "bucket": "landing", "prefix": "events/"}
    r = client.post("/api/v1/sources", json=body, headers=auth("writer"))
    assert r.status_code == 201, r.text
    assert client.post("/api/v1/sources", json=body, headers=ADMIN).status_code == 409
    listing = client.get("/api/v1/sources", headers=auth("reader")).json()
    assert listing["total"] == 1 and listing["items"][0]["prefix"] == "events/"
    bad = {**body, "name": "x", "table_id": "missing"}
    assert client.post("/api/v1/sources", json=bad, headers=ADMIN).status_code == 404


def test_files_of_empty_table(client: TestClient) -> None:
    table = make_table(client)
    r = client.get(f"/api/v1/tables/{table['id']}/files", headers=auth("reader"))
    body = r.json()
    assert (body["items"], body["total"], body["next"]) == ([], 0, None)
    assert body["snapshot"] and body["expires_at"]


def test_audit_trail_records_who_did_what(client: TestClient) -> None:
    table = make_table(client)
    client.put(
        f"/api/v1/tables/{table['id']}",
        json={"description": "x"},
        headers={**ADMIN, "X-Correlation-Id": "corr-42"},
    )
    assert client.get("/api/v1/audit", headers=auth("writer")).status_code == 403
    trail = client.get(f"/api/v1/audit?entity_id={table['id']}", headers=ADMIN).json()
    assert [e["action"] for e in trail["items"]] == ["table.update", "table.create"]
    assert trail["items"][0]["actor"] == "tester"
    assert trail["items"][0]["correlation_id"] == "corr-42"
