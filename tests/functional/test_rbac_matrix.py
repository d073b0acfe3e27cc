"""Every route of the OpenAPI document x (no token, reader, writer, admin), on both
catalogs, against the contract's roles: reader (GET, HEAD), writer (+ jobs, sources,
partitions, optimize, verify), admin (+ tables, schemas, audit, delete)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from datalake.tokens import make_token

RANK = {"none": 0, "reader": 1, "writer": 2, "admin": 3}

#: (method, path) -> the least role the contract grants it; GETs not listed need reader.
NEEDS = {
    ("GET", "/health"): "none",
    ("GET", "/api/v1/health"): "none",
    ("GET", "/api/v1/audit"): "admin",
    ("POST", "/api/v1/tables/"): "admin",
    ("PUT", "/api/v1/tables/{table_id}"): "admin",
    ("DELETE", "/api/v1/tables/{table_id}"): "admin",
    ("POST", "/api/v1/tables/{table_id}/verify"): "writer",
    ("POST", "/api/v1/sources"): "writer",
    ("DELETE", "/api/v1/sources/{source_id}"): "admin",
    ("POST", "/api/v1/ingestion/jobs"): "writer",
    ("POST", "/api/v1/ingestion/jobs/{job_id}/start"): "writer",
    ("POST", "/api/v1/ingestion/jobs/{job_id}/cancel"): "writer",
    ("POST", "/api/v1/ingestion/jobs/{job_id}/retry"): "writer",
    ("POST", "/api/v1/schema/versions"): "admin",
    ("POST", "/api/v1/schema/versions/{version_id}/apply"): "admin",
    ("POST", "/api/v1/schema/compare"): "admin",
    ("POST", "/api/v1/partitions"): "writer",
    ("PUT", "/api/v1/partitions/{partition_id}/stats"): "writer",
    ("POST", "/api/v1/partitions/table/{table_id}/optimize"): "writer",
}

SCHEMA = {"fields": [{"name": "id", "type": "long"}, {"name": "k", "type": "string"}]}


def bodies(ids: dict[str, str], n: int) -> dict[tuple[str, str], dict[str, Any]]:
    """A valid body for every operation that takes one (``n`` keeps names unique)."""
    return {
        ("POST", "/api/v1/tables/"): {"name": f"t{n}", "schema": SCHEMA},
        ("PUT", "/api/v1/tables/{table_id}"): {"description": "d"},
        ("POST", "/api/v1/sources"): {
            "name": f"s{n}",
            "table_id": ids["table_id"],
            "bucket": "datalake-landing",
        },
        ("POST", "/api/v1/ingestion/jobs"): {
            "table_id": ids["table_id"],
            "sources": ["s3://datalake-landing/x.csv"],
        },
        ("POST", "/api/v1/schema/versions"): {
            "table_id": ids["table_id"],
            "schema": {"fields": [*SCHEMA["fields"], {"name": f"c{n}", "type": "int"}]},
        },
        ("POST", "/api/v1/schema/versions/{version_id}/apply"): {},
        ("POST", "/api/v1/schema/compare"): {"old": SCHEMA, "new": SCHEMA},
        ("POST", "/api/v1/partitions"): {"table_id": ids["table_id"], "values": {"k": f"v{n}"}},
        ("POST", "/api/v1/partitions/table/{table_id}/optimize"): {},
    }


def _entities(api: TestClient, admin: dict[str, str], n: int) -> dict[str, str]:
    table = api.post(
        "/api/v1/tables/",
        json={
            "name": f"rbac{n}",
            "schema": SCHEMA,
            "partitioning": [{"column": "k", "transform": "identity"}],
        },
        headers=admin,
    ).json()
    job = api.post(
        "/api/v1/ingestion/jobs",
        json={"table_id": table["id"], "sources": ["s3://datalake-landing/a.csv"]},
        headers=admin,
    ).json()
    part = api.post(
        "/api/v1/partitions", json={"table_id": table["id"], "values": {"k": "a"}}, headers=admin
    ).json()
    version = api.get(f"/api/v1/schema/versions/table/{table['id']}/current", headers=admin).json()
    source = api.post("/api/v1/sources", headers=admin, json={
        "name": f"rbac{n}", "table_id": table["id"], "bucket": "datalake-landing",
        "prefix": f"rbac{n}/"}).json()
    return {
        "namespace": table["namespace"],
        "table": table["name"],
        "table_id": table["id"],
        "job_id": job["id"],
        "partition_id": part["id"],
        "version_id": version["id"],
        "source_id": source["id"],
        "run_id": "no-such-run",  # an optimize run's status: a 404 past the role check
    }


def test_every_route_against_every_role(api: TestClient) -> None:
    tokens = {
        role: {"Authorization": "Bearer " + make_token(f"rbac-{role}", [role])}
        for role in ("reader", "writer", "admin")
    }
    doc = api.get("/api/v1/openapi.json").json()
    operations = [(method.upper(), path) for path, ops in doc["paths"].items() for method in ops]
    assert len(operations) >= 30
    wrong: list[str] = []
    for n, (method, path) in enumerate(operations):
        ids = _entities(api, tokens["admin"], n)
        url = path.format(**ids)
        body = bodies(ids, n).get((method, path))
        needed = NEEDS.get((method, path), "reader" if method in ("GET", "HEAD") else None)
        assert needed is not None, f"{method} {path} is not in the contract's role table"
        for role in ("none", "reader", "writer", "admin"):
            headers = tokens.get(role, {})
            r = api.request(method, url, json=body, headers=headers)
            if role == "none" and needed != "none":
                expected_ok = r.status_code == 401
            elif RANK[role] < RANK[needed]:
                expected_ok = r.status_code == 403
            else:
                # Let through: any answer but a refusal (503: optimize has no function here).
                expected_ok = r.status_code not in (401, 403, 500)
            if not expected_ok:
                wrong.append(
                    f"{method} {path} as {role} (needs {needed}): {r.status_code} {r.text[:120]}"
                )
    assert not wrong, "\n".join(wrong)
