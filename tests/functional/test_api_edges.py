"""The API's edge on both catalogs: bad input is a 4xx naming the field, never a 500, and
never a 2xx for a write that did not commit; tokens are checked strictly."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from datalake.config import LOCAL_JWT_SECRET, get_settings
from datalake.tokens import make_token
from datalake_api.main import create_app

ADMIN = {"Authorization": "Bearer " + make_token("tester", ["admin"])}
JSON = {**ADMIN, "content-type": "application/json"}


@pytest.fixture
def table(api: TestClient) -> dict[str, Any]:
    r = api.post(
        "/api/v1/tables/",
        json={
            "name": "edges",
            "schema": {"fields": [{"name": "id", "type": "long"}, {"name": "k", "type": "string"}]},
            "partitioning": [{"column": "k", "transform": "identity"}],
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def names_field(r: Any, *parts: str | int) -> None:
    """A 422 whose detail names the field (structured loc, or the message text)."""
    assert r.status_code == 422, (r.status_code, r.text)
    detail = r.json()["detail"]
    if isinstance(detail, list):
        assert any(list(parts) == e["loc"][-len(parts) :] for e in detail), detail
    else:
        assert str(parts[-1]) in str(detail), detail


def test_a_write_whose_audit_row_cannot_commit_is_refused_not_lost(api: TestClient) -> None:
    r = api.post(
        "/api/v1/tables/", json={"name": "cid"}, headers={**ADMIN, "X-Correlation-Id": "x" * 129}
    )
    assert r.status_code == 422 and "X-Correlation-Id" in r.text
    assert api.get("/api/v1/tables/", headers=ADMIN).json()["total"] == 0
    ok = api.post(
        "/api/v1/tables/", json={"name": "cid"}, headers={**ADMIN, "X-Correlation-Id": "c" * 128}
    )
    assert ok.status_code == 201
    assert api.get(f"/api/v1/tables/{ok.json()['id']}", headers=ADMIN).status_code == 200


def test_a_lone_surrogate_is_refused_and_the_pool_stays_healthy(
    api: TestClient, table: dict[str, Any]
) -> None:
    tid = table["id"]
    body = '{"name": "a\\ud800", "table_id": "' + tid + '", "bucket": "datalake-landing"}'
    r = api.post("/api/v1/sources", content=body.encode(), headers=JSON)
    names_field(r, "body", "name")
    for _ in range(20):
        assert api.get("/api/v1/tables/", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/tables/?offset=9223372036854775808",
        "/api/v1/ingestion/jobs?offset=99999999999999999999",
        "/api/v1/sources?offset=-1",
        "/api/v1/audit?limit=0",
    ],
)
def test_paging_out_of_range_is_422(api: TestClient, url: str) -> None:
    r = api.get(url, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize(
    "url", ["/api/v1/tables/a%00b", "/api/v1/ingestion/jobs?status=a%00", "/api/v1/audit?actor=%00"]
)
def test_nul_in_ids_and_filters_is_422(api: TestClient, url: str) -> None:
    assert api.get(url, headers=ADMIN).status_code == 422


def test_ids_longer_than_any_id_are_422(api: TestClient) -> None:
    assert api.get("/api/v1/tables/" + "a" * 37, headers=ADMIN).status_code == 422
    assert api.get("/api/v1/tables/" + "a" * 36, headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "n" * 256, "bucket": "datalake-landing"}, "name"),
        ({"name": "s", "bucket": "b" * 64}, "bucket"),
        ({"name": "s", "bucket": "datalake-landing", "prefix": "p" * 2100}, "prefix"),
        ({"name": "s", "bucket": "../"}, "bucket"),
        ({"name": "s", "bucket": "a/b"}, "bucket"),
        ({"name": "s", "bucket": "datalake-landing", "options": {"batch_size": 0}}, "batch_size"),
        ({"name": "s", "bucket": "datalake-landing", "options": {"split_size_mb": -1}}, "split"),
    ],
)
def test_bad_sources_are_422_naming_the_field(
    api: TestClient, table: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    r = api.post("/api/v1/sources", json={**body, "table_id": table["id"]}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert field in r.text
    assert api.get("/api/v1/sources", headers=ADMIN).json()["total"] == 0


def test_sources_and_jobs_read_only_allowed_buckets_never_the_lake(
    api: TestClient, table: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATALAKE_SOURCE_BUCKETS", "partner-drop")
    get_settings.cache_clear()
    try:
        lake = get_settings().lake_bucket
        for bucket in (lake, "someone-elses-bucket"):
            r = api.post(
                "/api/v1/sources",
                json={"name": f"s-{bucket}", "table_id": table["id"], "bucket": bucket},
                headers=ADMIN,
            )
            assert r.status_code == 422 and "not an allowed source bucket" in r.text, r.text
            r = api.post(
                "/api/v1/ingestion/jobs",
                json={"table_id": table["id"], "sources": [f"s3://{bucket}/_quarantine/x"]},
                headers=ADMIN,
            )
            assert r.status_code == 422 and "not an allowed source bucket" in r.text, r.text
        for bucket in ("partner-drop", get_settings().landing_bucket):
            r = api.post(
                "/api/v1/ingestion/jobs",
                json={"table_id": table["id"], "sources": [f"s3://{bucket}/in/x.csv"]},
                headers=ADMIN,
            )
            assert r.status_code == 201, r.text
        monkeypatch.setenv("DATALAKE_SOURCE_BUCKETS", "*")
        get_settings.cache_clear()
        r = api.post(
            "/api/v1/ingestion/jobs",
            json={"table_id": table["id"], "sources": [f"s3://{lake}/x"]},
            headers=ADMIN,
        )
        assert r.status_code == 422, "'*' still never allows the lake bucket"
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("field", "fid"), [("id", 2**31), ("id", "abc"), ("id", {}), ("id", -3), ("id", True)]
)
def test_bad_field_ids_are_422(api: TestClient, field: str, fid: Any) -> None:
    schema = {"fields": [{field: fid, "name": "x", "type": "long"}]}
    r = api.post("/api/v1/tables/", json={"name": "fid", "schema": schema}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert "id" in r.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "t", "format": {"target_file_size_mb": NaN}}',
        b'{"name": "t", "format": {"target_file_size_mb": Infinity}}',
        b'{"name": "t", "format": {"x": -Infinity}}',
    ],
)
def test_non_finite_numbers_are_422(api: TestClient, body: bytes) -> None:
    r = api.post("/api/v1/tables/", content=body, headers=JSON)
    assert r.status_code == 422 and "JSON number" in r.text


def test_deep_nesting_and_huge_bodies_are_refused(api: TestClient) -> None:
    deep = ('{"name":"d","format":{"x":' + "[" * 300 + "]" * 300 + "}}").encode()
    r = api.post("/api/v1/tables/", content=deep, headers=JSON)
    assert r.status_code == 422 and "nested" in r.text
    r = api.post(
        "/api/v1/tables/", json={"name": "big", "description": "x" * 2_000_000}, headers=ADMIN
    )
    assert r.status_code == 413
    r = api.post("/api/v1/tables/", json={"name": "big", "description": "x" * 5000}, headers=ADMIN)
    names_field(r, "body", "description")
    assert api.get("/api/v1/tables/", headers=ADMIN).json()["total"] == 0


def test_int_beyond_64_bits_is_422(api: TestClient, table: dict[str, Any]) -> None:
    r = api.post(
        "/api/v1/ingestion/jobs",
        json={
            "table_id": table["id"],
            "sources": ["s3://datalake-landing/x"],
            "max_retries": 2**70,
        },
        headers=ADMIN,
    )
    names_field(r, "body", "max_retries")


def test_timestamps_with_any_offset_filter_in_utc(api: TestClient, table: dict[str, Any]) -> None:
    r = api.post(
        "/api/v1/ingestion/jobs",
        json={"table_id": table["id"], "sources": ["s3://datalake-landing/x"]},
        headers=ADMIN,
    )
    created = r.json()["created_at"]
    assert created.endswith(("Z", "+00:00")), created
    far = api.get(
        "/api/v1/ingestion/jobs",
        params={"created_before": "2999-01-01T00:00:00+14:00"},
        headers=ADMIN,
    )
    assert far.status_code == 200 and far.json()["total"] == 1
    past = api.get(
        "/api/v1/ingestion/jobs",
        params={"created_before": "2000-01-01T00:00:00+14:00"},
        headers=ADMIN,
    )
    assert past.status_code == 200 and past.json()["total"] == 0
    edge = api.get(
        "/api/v1/ingestion/jobs",
        params={"created_before": "0001-01-01T00:00:00+14:00"},
        headers=ADMIN,
    )
    assert edge.status_code == 422


@pytest.mark.parametrize(
    ("transform", "name", "message"),
    [
        ("identity", "a/../../b", "plain path segment"),
        ("identity", "x=y", "plain path segment"),
        ("identity", "..", "plain path segment"),
        ("range[5,1]", None, "ascending"),
        ("range[1,1]", None, "ascending"),
        ("range[2024-02-01,2024-01-01]", None, "ascending"),
        ("bucket[100000000000000000000]", None, "between 1 and"),
        ("truncate[0]", None, "between 1 and"),
    ],
)
def test_unsafe_partition_specs_are_422(
    api: TestClient, transform: str, name: str | None, message: str
) -> None:
    spec: dict[str, Any] = {"column": "id", "transform": transform}
    if name is not None:
        spec["name"] = name
    r = api.post(
        "/api/v1/tables/",
        json={
            "name": "pn",
            "schema": {"fields": [{"name": "id", "type": "long"}]},
            "partitioning": [spec],
        },
        headers=ADMIN,
    )
    assert r.status_code == 422 and message in r.text, r.text


def test_partition_values_too_long_for_a_path_are_422(
    api: TestClient, table: dict[str, Any]
) -> None:
    r = api.post(
        "/api/v1/partitions",
        json={"table_id": table["id"], "values": {"k": "v" * 2000}},
        headers=ADMIN,
    )
    assert r.status_code == 422 and "path" in r.text, r.text
    ok = api.post(
        "/api/v1/partitions",
        json={"table_id": table["id"], "values": {"k": "a/b=c"}},
        headers=ADMIN,
    )
    assert ok.status_code == 201 and ok.json()["path"] == "k=a%2Fb%3Dc"


def _token(claims: dict[str, Any], secret: str = LOCAL_JWT_SECRET) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def _claims(**over: Any) -> dict[str, Any]:
    s = get_settings()
    base = {
        "sub": "x",
        "roles": ["admin"],
        "exp": int(time.time()) + 60,
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    "claims",
    [
        _claims(roles=5),
        _claims(roles=True),
        _claims(roles=1.5),
        _claims(roles={"admin": False}),
        _claims(roles=[["admin"]]),
        _claims(roles=["admin", "superuser"]),
        _claims(exp=None),
        _claims(exp=int(time.time()) - 10),
        _claims(iss=None),
        _claims(iss="someone-else"),
        _claims(aud=None),
        _claims(aud="another-api"),
        _claims(sub=None),
        _claims(sub="s" * 256),
        _claims(sub=7),
    ],
)
def test_malformed_tokens_are_401(api: TestClient, claims: dict[str, Any]) -> None:
    r = api.get("/api/v1/audit", headers=_token(claims))
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/json")


def test_a_well_formed_token_passes(api: TestClient) -> None:
    assert api.get("/api/v1/audit", headers=_token(_claims())).status_code == 200
    assert api.get("/api/v1/audit", headers=_token(_claims(roles="admin"))).status_code == 200


def test_the_development_secret_is_refused_outside_local(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATALAKE_ENVIRONMENT", "aws")
    get_settings.cache_clear()
    try:
        r = api.get("/api/v1/audit", headers=_token(_claims()))
        assert r.status_code == 401 and "development token secret" in r.text
        secret = "s" * 40
        monkeypatch.setenv("DATALAKE_JWT_SECRET", secret)
        get_settings.cache_clear()
        assert api.get("/api/v1/audit", headers=_token(_claims(), secret)).status_code == 200
        monkeypatch.setenv("DATALAKE_JWT_SECRET", "short")
        get_settings.cache_clear()
        r = api.get("/api/v1/audit", headers=_token(_claims(), "short"))
        assert r.status_code == 401 and "shorter than" in r.text
    finally:
        get_settings.cache_clear()


def test_cors_is_off_by_default_and_answers_preflights_when_configured(
    use_catalog: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        r = c.options("/api/v1/tables/", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    monkeypatch.setenv("DATALAKE_CORS_ORIGINS", "https://app.example")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as c:
            r = c.options("/api/v1/tables/", headers=preflight)
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "https://app.example"
            assert "authorization" in r.headers["access-control-allow-headers"].lower()
            other = c.options(
                "/api/v1/tables/", headers={**preflight, "Origin": "https://evil.example"}
            )
            assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    finally:
        get_settings.cache_clear()


def test_collections_answer_without_redirects(api: TestClient) -> None:
    for path in ("/api/v1/tables", "/api/v1/tables/", "/api/v1/sources", "/api/v1/sources/"):
        assert api.get(path, headers=ADMIN, follow_redirects=False).status_code == 200, path


def test_the_openapi_document_declares_the_bearer_scheme_and_errors(api: TestClient) -> None:
    doc = api.get("/api/v1/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
    get_table = doc["paths"]["/api/v1/tables/{table_id}"]["get"]
    for code in ("401", "403", "404", "422", "503"):
        assert code in get_table["responses"], code


def test_a_commit_that_breaks_a_constraint_is_409_and_leaves_nothing(
    api: TestClient, table: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests racing for one unique name: the loser's commit fails at the
    database, and it is told so (409), never a 2xx and never a 500."""
    from datalake.services import audit

    real = audit.record

    def record_twice(session: Any, **kw: Any) -> None:
        real(session, **kw)
        # Stands in for a concurrent writer: insert the same source name before commit.
        if kw.get("action") == "source.create":
            from datalake.catalog.models import DataSource

            session.add(DataSource(name="racer", table_id=table["id"], bucket="datalake-landing"))

    monkeypatch.setattr(audit, "record", record_twice)
    r = api.post(
        "/api/v1/sources",
        json={"name": "racer", "table_id": table["id"], "bucket": "datalake-landing"},
        headers=ADMIN,
    )
    assert r.status_code == 409, r.text
    assert "concurrent" in r.text
    monkeypatch.setattr(audit, "record", real)
    assert api.get("/api/v1/sources", headers=ADMIN).json()["total"] == 0
