"""The partitions endpoints on a real catalog (SQLite and Postgres), through FastAPI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, DataLakePartition, IngestionBatch
from datalake.services import jobs
from datalake.tokens import make_token
from datalake_api.main import create_app
from datalake_api.routes import partitions as partition_routes


class FakeRequester:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def request(self, payload: dict[str, Any]) -> str | None:
        self.payloads.append(payload)
        return f"req-{len(self.payloads)}"


class FakeOrchestrator:
    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        return f"arn:aws:states:us-east-1:000000000000:execution:ingest:{job_id}"

    def stop(self, execution_id: str, *, reason: str) -> None:
        pass


@pytest.fixture
def requester() -> FakeRequester:
    return FakeRequester()


@pytest.fixture
def client(use_catalog: str, requester: FakeRequester) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[partition_routes.get_compaction_requester] = lambda: requester
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def auth(*roles: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + make_token("tester", list(roles))}


ADMIN, WRITER, READER = auth("admin"), auth("writer"), auth("reader")
SCHEMA = {
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "ts", "type": "timestamp"},
        {"name": "carrier", "type": "string"},
    ]
}
SPEC = [
    {"column": "ts", "transform": "day"},
    {"column": "id", "transform": "bucket[4]"},
]


def make_table(client: TestClient, name: str = "events", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "schema": SCHEMA, "partitioning": SPEC, **extra}
    r = client.post("/api/v1/tables/", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


def register(client: TestClient, table_id: str, values: dict[str, Any]) -> Any:
    return client.post(
        "/api/v1/partitions/", json={"table_id": table_id, "values": values}, headers=WRITER
    )


def commit_files(table_id: str, files: list[dict[str, Any]]) -> str:
    """Commit a job whose (single) batch wrote ``files``, as the Commit state does."""
    with session_scope() as session:
        job = jobs.create_job(session, table_id=table_id, sources=["s3://landing/x.csv"])
        jobs.start_job(session, job.id, orchestrator=FakeOrchestrator())
        batch = IngestionBatch(job_id=job.id, seq=0, split={}, status="SUCCEEDED")
        session.add(batch)
        session.flush()
        for n, f in enumerate(files):
            session.add(
                DataFile(
                    table_id=table_id,
                    job_id=job.id,
                    batch_id=batch.id,
                    partition_path=jobs.partition_path(f["partition"]),
                    partition_values=f["partition"],
                    bucket="lake",
                    key=f"default/events/{jobs.partition_path(f['partition'])}/"
                    f"part-{job.id}-{n:04d}.parquet",
                    record_count=f["rows"],
                    size_bytes=f.get("size", 1000),
                    checksum="0" * 64,
                    schema_version=1,
                    column_stats=f["stats"],
                    status="PENDING",
                )
            )
        session.flush()
        jobs.commit_job(session, job.id)
        return job.id


DAY1 = {"ts_day": "2013-01-01", "id_bucket": "1"}


def stats(lo: int, hi: int, nulls: int = 0) -> dict[str, Any]:
    return {
        "id": {"min": lo, "max": hi, "null_count": 0},
        "carrier": {"min": "AA", "max": "UA", "null_count": nulls},
    }


def test_register_and_list(client: TestClient) -> None:
    table = make_table(client)
    r = register(client, table["id"], {"id_bucket": 1, "ts_day": "2013-01-01"})
    assert r.status_code == 201, r.text
    part = r.json()
    assert part["path"] == "ts_day=2013-01-01/id_bucket=1", "spec order, whatever the body's"
    assert part["values"] == DAY1
    assert part["record_count"] == part["file_count"] == part["size_bytes"] == 0
    assert part["stats"] == {} and part["table_id"] == table["id"]

    again = register(client, table["id"], {"ts_day": "2013-01-01", "id_bucket": "1"})
    assert again.status_code == 409
    assert register(client, table["id"], {"ts_day": None, "id_bucket": 0}).status_code == 201

    listing = client.get(f"/api/v1/partitions/table/{table['id']}", headers=READER)
    assert listing.status_code == 200
    body = listing.json()
    assert body["total"] == 2
    null_path = jobs.partition_path({"ts_day": None, "id_bucket": "0"})  # as Commit writes it
    assert sorted(p["path"] for p in body["items"]) == sorted(
        ["ts_day=2013-01-01/id_bucket=1", null_path]
    )
    assert {"ts_day": None, "id_bucket": "0"} in [p["values"] for p in body["items"]]
    page = client.get(f"/api/v1/partitions/table/{table['id']}?limit=1&offset=1", headers=READER)
    assert page.json()["total"] == 2 and len(page.json()["items"]) == 1
    one = client.get(f"/api/v1/partitions/{part['id']}", headers=READER)
    assert one.status_code == 200 and one.json()["id"] == part["id"]


def test_registered_partition_receives_the_jobs_rows(client: TestClient) -> None:
    table = make_table(client)
    part = register(client, table["id"], DAY1).json()
    commit_files(table["id"], [{"partition": DAY1, "rows": 10, "stats": stats(1, 9)}])
    listing = client.get(f"/api/v1/partitions/table/{table['id']}", headers=READER).json()
    assert listing["total"] == 1
    assert listing["items"][0]["id"] == part["id"]
    assert listing["items"][0]["record_count"] == 10


@pytest.mark.parametrize(
    "values",
    [
        {"ts_day": "2013-01-01"},  # a field missing
        {"ts_day": "2013-01-01", "id_bucket": 1, "extra": "x"},  # an unknown field
        {"ts": "2013-01-01", "id_bucket": 1},  # the column, not the field name
        {"ts_day": "2013-13-01", "id_bucket": 1},  # not a day
        {"ts_day": "01/01/2013", "id_bucket": 1},
        {"ts_day": "2013-01-01", "id_bucket": 4},  # bucket out of range
        {"ts_day": "2013-01-01", "id_bucket": "x"},
        {"ts_day": ["2013-01-01"], "id_bucket": 1},
        "not-an-object",
    ],
)
def test_bad_partition_values_are_422(client: TestClient, values: Any) -> None:
    table = make_table(client)
    r = client.post(
        "/api/v1/partitions/", json={"table_id": table["id"], "values": values}, headers=WRITER
    )
    assert r.status_code == 422, r.text
    assert "detail" in r.json()


def test_other_transforms_and_unpartitioned_tables(client: TestClient) -> None:
    table = make_table(
        client,
        name="ranged",
        partitioning=[
            {"column": "carrier", "transform": "identity"},
            {"column": "id", "transform": "range[100,200]"},
            {"column": "ts", "transform": "hour"},
        ],
    )
    ok = {"carrier": "AA", "id_range": "100_to_200", "ts_hour": "2013-01-01-05"}
    r = register(client, table["id"], ok)
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "carrier=AA/id_range=100_to_200/ts_hour=2013-01-01-05"
    assert register(client, table["id"], {**ok, "id_range": "lt_50"}).status_code == 422
    assert register(client, table["id"], {**ok, "ts_hour": "2013-01-01"}).status_code == 422

    flat = client.post("/api/v1/tables/", json={"name": "flat", "schema": SCHEMA}, headers=ADMIN)
    flat_id = flat.json()["id"]
    r = register(client, flat_id, {})
    assert r.status_code == 201 and r.json()["path"] == ""
    assert register(client, flat_id, {}).status_code == 409
    assert register(client, flat_id, {"carrier": "AA"}).status_code == 422


def test_listing_shows_stats_after_a_job(client: TestClient) -> None:
    table = make_table(client)
    day2 = {"ts_day": "2013-01-02", "id_bucket": "3"}
    commit_files(
        table["id"],
        [
            {"partition": DAY1, "rows": 10, "size": 100, "stats": stats(1, 9)},
            {"partition": DAY1, "rows": 5, "size": 50, "stats": stats(-3, 4, nulls=2)},
            {"partition": day2, "rows": 7, "size": 70, "stats": stats(20, 30)},
        ],
    )
    items = client.get(f"/api/v1/partitions/table/{table['id']}", headers=READER).json()["items"]
    by_path = {p["path"]: p for p in items}
    p1 = by_path["ts_day=2013-01-01/id_bucket=1"]
    assert (p1["record_count"], p1["file_count"], p1["size_bytes"]) == (15, 2, 150)
    assert p1["values"] == DAY1
    assert p1["stats"]["id"] == {"min": -3, "max": 9, "null_count": 0}
    assert p1["stats"]["carrier"]["null_count"] == 2
    p2 = by_path["ts_day=2013-01-02/id_bucket=3"]
    assert (p2["record_count"], p2["file_count"]) == (7, 1)
    assert p2["stats"]["id"] == {"min": 20, "max": 30, "null_count": 0}
    assert "updated_at" in p2


def test_recompute_stats_from_committed_files(client: TestClient) -> None:
    table = make_table(client)
    commit_files(
        table["id"],
        [
            {"partition": DAY1, "rows": 10, "size": 100, "stats": stats(1, 9)},
            {"partition": DAY1, "rows": 5, "size": 50, "stats": stats(-3, 4, nulls=2)},
        ],
    )
    part = client.get(f"/api/v1/partitions/table/{table['id']}", headers=READER).json()["items"][0]
    with session_scope() as session:  # drift: counts and stats gone wrong
        row = session.get(DataLakePartition, part["id"])
        assert row is not None
        row.record_count, row.file_count, row.size_bytes, row.stats = 999, 9, 9, {}
        # and a file that was never committed must not count
        session.add(
            DataFile(table_id=table["id"], partition_id=part["id"], partition_path=part["path"],
                     bucket="lake", key="stray.parquet", record_count=1000, size_bytes=1,
                     checksum="x", status="PENDING")
        )

    r = client.put(f"/api/v1/partitions/{part['id']}/stats", headers=WRITER)

    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["record_count"], got["file_count"], got["size_bytes"]) == (15, 2, 150)
    assert got["stats"] == part["stats"]
    assert client.put("/api/v1/partitions/nope/stats", headers=WRITER).status_code == 404
    assert client.put(f"/api/v1/partitions/{part['id']}/stats", headers=READER).status_code == 403


def test_optimize_is_accepted_and_hands_the_run_over(
    client: TestClient, requester: FakeRequester
) -> None:
    table = make_table(client)
    commit_files(table["id"], [{"partition": DAY1, "rows": 1, "stats": stats(1, 1)}] * 3)

    r = client.post(f"/api/v1/partitions/table/{table['id']}/optimize",
                    json={"target_file_size_mb": 64}, headers=WRITER)

    assert r.status_code == 202, r.text
    body = r.json()
    assert body["table_id"] == table["id"] and body["status"] == "ACCEPTED"
    assert body["target_file_size_mb"] == 64 and body["request_id"] == "req-1"
    assert body["partitions_to_compact"] == 1
    assert requester.payloads[0]["table_id"] == table["id"]
    assert requester.payloads[0]["target_file_size_mb"] == 64
    assert requester.payloads[0]["requested_by"] == "tester"

    # No body: the table's own target; one partition only.
    r = client.post(f"/api/v1/partitions/table/{table['id']}/optimize", headers=WRITER)
    assert r.status_code == 202 and r.json()["target_file_size_mb"] == 128
    part_id = client.get(f"/api/v1/partitions/table/{table['id']}",
                         headers=READER).json()["items"][0]["id"]
    r = client.post(f"/api/v1/partitions/table/{table['id']}/optimize",
                    json={"partition_id": part_id}, headers=WRITER)
    assert r.status_code == 202 and r.json()["partition_id"] == part_id
    assert len(requester.payloads) == 3

    audit = client.get("/api/v1/audit", headers=ADMIN)
    if audit.status_code == 200:  # the audit endpoint belongs to another module
        assert any(e.get("action") == "table.optimize" for e in audit.json()["items"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"target_file_size_mb": 0}, 422),
        ({"target_file_size_mb": 5000}, 422),
        ({"target_file_size_mb": "big"}, 422),
        ({"target": 64}, 422),
        ({"partition_id": "nope"}, 404),
    ],
)
def test_bad_optimize_requests(
    client: TestClient, requester: FakeRequester, body: dict[str, Any], status: int
) -> None:
    table = make_table(client)
    r = client.post(f"/api/v1/partitions/table/{table['id']}/optimize", json=body,
                    headers=WRITER)
    assert r.status_code == status, r.text
    assert requester.payloads == []


def test_optimize_unknown_or_foreign_ids(client: TestClient, requester: FakeRequester) -> None:
    table = make_table(client)
    other = make_table(client, name="other")
    foreign = register(client, other["id"], DAY1).json()
    assert client.post("/api/v1/partitions/table/nope/optimize", headers=WRITER).status_code == 404
    r = client.post(f"/api/v1/partitions/table/{table['id']}/optimize",
                    json={"partition_id": foreign["id"]}, headers=WRITER)
    assert r.status_code == 404
    client.delete(f"/api/v1/tables/{other['id']}", headers=ADMIN)
    assert client.post(f"/api/v1/partitions/table/{other['id']}/optimize",
                       headers=WRITER).status_code == 404
    assert requester.payloads == []


def test_optimize_without_a_configured_function_is_503(
    use_catalog: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datalake.aws.lambdas import LambdaCompactionRequester

    app = create_app()
    app.dependency_overrides[partition_routes.get_compaction_requester] = (
        lambda: LambdaCompactionRequester(None)
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        table = make_table(c)
        r = c.post(f"/api/v1/partitions/table/{table['id']}/optimize", headers=WRITER)
    assert r.status_code == 503
    assert "not configured" in r.json()["detail"]


def test_lambda_requester_invokes_asynchronously() -> None:
    from datalake.aws.lambdas import LambdaCompactionRequester

    calls: list[dict[str, Any]] = []

    class FakeLambda:
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(kwargs)
            return {"StatusCode": 202, "ResponseMetadata": {"RequestId": "abc"}}

    requester = LambdaCompactionRequester("optimize-fn", FakeLambda())
    assert requester.request({"table_id": "t"}) == "abc"
    assert calls[0]["InvocationType"] == "Event"
    assert calls[0]["FunctionName"] == "optimize-fn"
    assert b'"table_id": "t"' in calls[0]["Payload"]


def test_unknown_ids_and_roles(client: TestClient) -> None:
    table = make_table(client)
    assert client.get("/api/v1/partitions/table/nope", headers=READER).status_code == 404
    assert client.get("/api/v1/partitions/nope", headers=READER).status_code == 404
    assert register(client, "nope", DAY1).status_code == 404
    assert client.get(f"/api/v1/partitions/table/{table['id']}").status_code == 401
    r = client.post("/api/v1/partitions/", json={"table_id": table["id"], "values": DAY1},
                    headers=READER)
    assert r.status_code == 403
    assert client.post(f"/api/v1/partitions/table/{table['id']}/optimize",
                       headers=READER).status_code == 403
    assert client.get(f"/api/v1/partitions/table/{table['id']}?limit=0",
                      headers=READER).status_code == 422
    r = client.post("/api/v1/partitions/", json={"values": DAY1}, headers=WRITER)
    assert r.status_code == 422
    # A deleted table's partitions are hidden like the table.
    client.delete(f"/api/v1/tables/{table['id']}", headers=ADMIN)
    assert client.get(f"/api/v1/partitions/table/{table['id']}", headers=READER).status_code == 404
