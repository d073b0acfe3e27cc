"""Verify, retry, Idempotency-Key and table deletion through the HTTP API, on both catalogs.

The catalog rows of committed files are written directly and their objects live in an
in-memory store, so each case sets up exactly the damage it needs.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest
from starlette.testclient import TestClient

from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, DataLakePartition, IngestionJob, utcnow
from datalake.errors import NotFound
from datalake.services import sources as source_service
from datalake.tokens import make_token
from datalake_api import deps
from datalake_api.main import create_app
from tests.fakes import FakeDeleter, FakeOrchestrator

LAKE = "lake"


class MemoryStore:
    """Objects in a dict; reads as the S3 adapter does (NotFound when missing)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def open_input(self, bucket: str, key: str) -> BinaryIO:
        try:
            return io.BytesIO(self.objects[(bucket, key)])
        except KeyError as e:
            raise NotFound(f"s3://{bucket}/{key} does not exist") from e


@pytest.fixture
def objects() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client(use_catalog: str, objects: MemoryStore) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[deps.get_orchestrator] = FakeOrchestrator
    app.dependency_overrides[deps.get_sweeper] = FakeDeleter
    app.dependency_overrides[deps.get_object_reader] = lambda: objects
    # The catalog rows are written directly: no Iceberg table to publish here
    # (test_iceberg.py verifies through the API with one).
    app.dependency_overrides[deps.get_iceberg_publisher] = lambda: None
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def auth(*roles: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + make_token("tester", list(roles))}


ADMIN, WRITER, READER = auth("admin"), auth("writer"), auth("reader")
SCHEMA = {"fields": [{"name": "id", "type": "long"}, {"name": "ts", "type": "timestamp"}]}
DAY = {"column": "ts", "transform": "day"}


def make_table(client: TestClient, name: str = "events") -> str:
    r = client.post(
        "/api/v1/tables/",
        json={"name": name, "schema": SCHEMA, "partitioning": [DAY]},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def committed_job(
    objects: MemoryStore, table_id: str, files: dict[str, list[int]]
) -> tuple[str, dict[str, str]]:
    """A SUCCEEDED job with committed files: partition path -> record counts of its files.

    Returns the job id and the object key of each file id.
    """
    keys: dict[str, str] = {}
    with session_scope() as session:
        job = IngestionJob(
            table_id=table_id,
            sources=["s3://landing/in.csv"],
            status="SUCCEEDED",
            records_written=sum(sum(v) for v in files.values()),
            finished_at=utcnow(),
        )
        session.add(job)
        session.flush()
        for path, counts in files.items():
            part = DataLakePartition(
                table_id=table_id,
                path=path,
                values={"ts_day": path.split("=")[1]},
                record_count=sum(counts),
                file_count=len(counts),
                size_bytes=0,
                stats={},
            )
            session.add(part)
            session.flush()
            for n, count in enumerate(counts):
                body = f"{path}/{n}/{count}".encode() * 10
                key = f"default/events/{path}/part-{job.id}-{n}.parquet"
                objects.objects[(LAKE, key)] = body
                f = DataFile(
                    table_id=table_id,
                    job_id=job.id,
                    partition_id=part.id,
                    partition_path=path,
                    partition_values=part.values,
                    bucket=LAKE,
                    key=key,
                    record_count=count,
                    size_bytes=len(body),
                    checksum=hashlib.sha256(body).hexdigest(),
                    status="COMMITTED",
                    committed_at=utcnow(),
                    committed_seq=0,  # as the migration numbers existing files
                )
                session.add(f)
                session.flush()
                part.size_bytes += len(body)
                keys[f.id] = key
        return job.id, keys


def test_verify_reports_marks_and_shows_the_marks(client: TestClient, objects: MemoryStore) -> None:
    table_id = make_table(client)
    job_id, keys = committed_job(
        objects, table_id, {"ts_day=2024-01-01": [10, 20], "ts_day=2024-01-02": [5]}
    )
    by_key = {v: k for k, v in keys.items()}
    first, second, third = sorted(keys.values())
    objects.objects[(LAKE, first)] = b"tampered"
    del objects.objects[(LAKE, third)]

    assert client.post(f"/api/v1/tables/{table_id}/verify", headers=READER).status_code == 403
    r = client.post(f"/api/v1/tables/{table_id}/verify", headers=WRITER)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["table_id"] == table_id
    assert report["files_checked"] == 3 and report["ok"] == 1
    assert [c["path"] for c in report["corrupt"]] == [f"s3://{LAKE}/{first}"]
    assert report["corrupt"][0]["actual"] == hashlib.sha256(b"tampered").hexdigest()
    assert [m["path"] for m in report["missing"]] == [f"s3://{LAKE}/{third}"]
    assert report["partitions_marked"] == 2
    assert report["jobs_marked"] == [job_id]
    assert report["remaining"] == 0

    parts = client.get(f"/api/v1/partitions/table/{table_id}", headers=READER).json()["items"]
    got = {p["path"]: (p["corrupt_files"], p["record_count"], p["file_count"]) for p in parts}
    assert got == {"ts_day=2024-01-01": (1, 20, 1), "ts_day=2024-01-02": (1, 0, 0)}
    job = client.get(f"/api/v1/ingestion/jobs/{job_id}", headers=READER).json()
    assert job["corrupted_at"] is not None
    files = client.get(f"/api/v1/tables/{table_id}/files", headers=READER).json()
    assert [f["id"] for f in files["items"]] == [by_key[second]]
    assert files["items"][0]["verified_at"] is not None
    # GET /tables/{id} is what it was.
    table = client.get(f"/api/v1/tables/{table_id}", headers=READER).json()
    assert table["id"] == table_id and "corrupt_files" not in table


def test_verify_is_bounded_by_limit(client: TestClient, objects: MemoryStore) -> None:
    table_id = make_table(client)
    committed_job(objects, table_id, {"ts_day=2024-01-01": [1, 1, 1, 1, 1]})
    url = f"/api/v1/tables/{table_id}/verify"
    r = client.post(url + "?limit=2", headers=WRITER)
    assert r.status_code == 200 and (r.json()["files_checked"], r.json()["remaining"]) == (2, 3)
    r = client.post(url + "?limit=2", headers=WRITER)
    assert (r.json()["files_checked"], r.json()["remaining"]) == (2, 1)
    r = client.post(url, headers=WRITER)
    assert (r.json()["files_checked"], r.json()["ok"], r.json()["remaining"]) == (5, 5, 0)
    # A new pass: everything verified before `since` is due again.
    since = utcnow().isoformat()
    r = client.post(url, params={"limit": 4, "since": since}, headers=WRITER)
    assert (r.json()["files_checked"], r.json()["remaining"]) == (4, 1)


@pytest.mark.parametrize("query", ["?limit=0", "?limit=10001", "?limit=x", "?since=yesterday"])
def test_bad_verify_input_is_422(client: TestClient, query: str) -> None:
    table_id = make_table(client)
    r = client.post(f"/api/v1/tables/{table_id}/verify{query}", headers=WRITER)
    assert r.status_code == 422, r.text


def test_verify_of_unknown_or_deleted_table_is_404(client: TestClient) -> None:
    assert client.post("/api/v1/tables/nope/verify", headers=WRITER).status_code == 404
    table_id = make_table(client)
    client.delete(f"/api/v1/tables/{table_id}", headers=ADMIN)
    assert client.post(f"/api/v1/tables/{table_id}/verify", headers=WRITER).status_code == 404


def create_job(client: TestClient, table_id: str, **extra: Any) -> dict[str, Any]:
    body = {"table_id": table_id, "sources": ["s3://landing/a.csv"], **extra}
    r = client.post("/api/v1/ingestion/jobs", json=body, headers=WRITER)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_retry_only_of_failed_cancelled_or_corrupted_jobs(
    client: TestClient, objects: MemoryStore
) -> None:
    table_id = make_table(client)
    job = create_job(
        client, table_id, format="csv", options={"batch_size": 7, "delimiter": ";"},
        max_retries=4, timeout_seconds=120,
    )
    retry = f"/api/v1/ingestion/jobs/{job['id']}/retry"
    assert client.post(retry, headers=WRITER).status_code == 409  # PENDING
    client.post(f"/api/v1/ingestion/jobs/{job['id']}/start", headers=WRITER)
    assert client.post(retry, headers=WRITER).status_code == 409  # RUNNING
    assert client.post(retry, headers=READER).status_code == 403
    client.post(f"/api/v1/ingestion/jobs/{job['id']}/cancel", headers=WRITER)
    r = client.post(retry, headers=WRITER)
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["status"] == "PENDING" and new["id"] != job["id"]
    assert new["retry_of"] == job["id"]
    for name in ("table_id", "sources", "format", "options", "max_retries", "timeout_seconds"):
        assert new[name] == job[name], name
    # One live retry at a time: a second one would rebuild the same data twice.
    assert client.post(retry, headers=WRITER).status_code == 409
    assert client.post("/api/v1/ingestion/jobs/nope/retry", headers=WRITER).status_code == 404

    healthy, _ = committed_job(objects, table_id, {"ts_day=2024-01-01": [3]})
    r = client.post(f"/api/v1/ingestion/jobs/{healthy}/retry", headers=WRITER)
    assert r.status_code == 409 and "not corrupted" in r.json()["detail"]
    objects.objects.clear()  # every object gone: verification marks the job corrupted
    client.post(f"/api/v1/tables/{table_id}/verify", headers=WRITER)
    r = client.post(f"/api/v1/ingestion/jobs/{healthy}/retry", headers=WRITER)
    assert r.status_code == 201 and r.json()["retry_of"] == healthy


def test_idempotency_key_returns_the_same_job(client: TestClient) -> None:
    table_id = make_table(client)
    other = make_table(client, "other")
    body = {"table_id": table_id, "sources": ["s3://landing/a.csv"], "options": {"batch_size": 9}}
    url = "/api/v1/ingestion/jobs"
    key = {**WRITER, "Idempotency-Key": "order-42"}
    first = client.post(url, json=body, headers=key)
    assert first.status_code == 201, first.text
    again = client.post(url, json=body, headers=key)
    assert again.status_code == 200 and again.json() == first.json()
    for changed in (
        {**body, "sources": ["s3://landing/b.csv"]},
        {**body, "table_id": other},
        {**body, "options": {"batch_size": 10}},
    ):
        r = client.post(url, json=changed, headers=key)
        assert r.status_code == 409 and "different request" in r.json()["detail"], r.text
    other_key = {**WRITER, "Idempotency-Key": "order-43"}
    assert client.post(url, json=body, headers=other_key).status_code == 201
    assert client.post(url, json=body, headers=WRITER).status_code == 201  # no key: a new job
    listing = client.get(f"{url}?table_id={table_id}", headers=READER).json()
    assert listing["total"] == 3
    for bad in ("", "x" * 256):
        r = client.post(url, json=body, headers={**WRITER, "Idempotency-Key": bad})
        assert r.status_code in (400, 422), (bad, r.status_code, r.text)


def test_deleting_a_table_disables_its_sources(client: TestClient) -> None:
    table_id = make_table(client)
    kept = make_table(client, "kept")
    for name, tid in (("drop", table_id), ("keep", kept)):
        r = client.post(
            "/api/v1/sources",
            json={"name": name, "table_id": tid, "bucket": "landing", "prefix": f"{name}/"},
            headers=WRITER,
        )
        assert r.status_code == 201 and r.json()["enabled"] is True
    assert client.delete(f"/api/v1/tables/{table_id}", headers=ADMIN).status_code == 200
    listed = client.get("/api/v1/sources", headers=READER).json()["items"]
    assert {s["name"]: s["enabled"] for s in listed} == {"drop": False, "keep": True}
    with session_scope() as session:
        assert source_service.match_sources(session, "landing", "drop/a.csv") == []
        assert [s.name for s in source_service.match_sources(session, "landing", "keep/a.csv")] == [
            "keep"
        ]


def test_a_sources_ignore_patterns_are_stored_shown_and_applied(client: TestClient) -> None:
    table_id = make_table(client)
    body = {"name": "drop", "table_id": table_id, "bucket": "landing", "prefix": "drop/",
            "ignore": ["*.tmp", "staging/*"]}
    r = client.post("/api/v1/sources", json=body, headers=WRITER)
    assert r.status_code == 201, r.text
    assert r.json()["ignore"] == ["*.tmp", "staging/*"]
    (listed,) = client.get("/api/v1/sources", headers=READER).json()["items"]
    assert listed["ignore"] == ["*.tmp", "staging/*"]
    with session_scope() as session:
        def match(key: str) -> list[str]:
            return [s.name for s in source_service.match_sources(session, "landing", key)]

        assert match("drop/a.csv") == ["drop"]
        assert match("drop/a.csv.tmp") == match("drop/staging/a.csv") == []
    # A source without patterns ignores nothing beyond the markers; bad patterns are a 422.
    plain = client.post("/api/v1/sources", json={**body, "name": "plain", "ignore": None},
                        headers=WRITER)
    assert plain.status_code == 201 and plain.json()["ignore"] == []
    for bad in ("*.tmp", [""], [1], ["a\u0000"], ["*"] * 101):
        r = client.post("/api/v1/sources", json={**body, "name": "bad", "ignore": bad},
                        headers=WRITER)
        assert r.status_code == 422, (bad, r.status_code, r.text)
