"""The schema-version API on a real catalog (SQLite and Postgres), through FastAPI's client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from datalake.catalog.db import session_scope
from datalake.catalog.models import AuditEvent, DataFile, DataLakeSchema, SchemaChange
from datalake.tokens import make_token
from datalake_api.main import create_app

API = "/api/v1"
MISSING = "00000000-0000-0000-0000-000000000000"
BASE = {
    "fields": [
        {"name": "id", "type": "int", "nullable": False},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "float"},
        {"name": "ts", "type": "timestamp"},
    ]
}


def auth(*roles: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + make_token("schema-tester", list(roles))}


ADMIN = auth("admin")
READER = auth("reader")


@pytest.fixture
def client(use_catalog: str) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def make_table(client: TestClient, name: str = "people", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "schema": BASE, **extra}
    r = client.post(f"{API}/tables/", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


def propose(client: TestClient, table_id: str, fields: list[dict[str, Any]], **extra: Any) -> Any:
    body = {"table_id": table_id, "schema": {"fields": fields}, **extra}
    return client.post(f"{API}/schema/versions", json=body, headers=ADMIN)


def hold_data(table_id: str, version: int) -> None:
    """Record a committed file written with ``version``: BACKWARD keeps data readable,
    and a version no data was written with has none to keep."""
    with session_scope() as session:
        session.add(
            DataFile(
                table_id=table_id,
                bucket="lake",
                key=f"data/v{version}.parquet",
                checksum="0" * 64,
                schema_version=version,
                status="COMMITTED",
            )
        )


def fields_of(version: dict[str, Any]) -> list[tuple[int, str, str, bool]]:
    return [(f["id"], f["name"], f["type"], f["nullable"]) for f in version["schema"]["fields"]]


def history(client: TestClient, table_id: str) -> list[dict[str, Any]]:
    r = client.get(f"{API}/schema/versions/table/{table_id}", headers=READER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["items"])
    return list(body["items"])


def audit_actions(table_id: str) -> list[tuple[str, dict[str, Any]]]:
    with session_scope() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.entity_type == "schema").order_by(AuditEvent.at)
        ).all()
        return [(r.action, dict(r.details)) for r in rows if r.details.get("table_id") == table_id]


def test_create_list_current(client: TestClient) -> None:
    table = make_table(client)
    r = propose(
        client,
        table["id"],
        [
            {"name": "ID", "type": "int", "nullable": False},  # same column, other case
            {"name": "name", "type": "string"},
            {"name": "score", "type": "double"},  # float -> double: a safe promotion
            {"name": "ts", "type": "timestamp"},
            {"name": "city", "type": "string"},  # new optional column
        ],
        description="add city, widen score",
    )
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert v2["version"] == 2 and v2["parent_version"] == 1
    assert v2["source"] == "api" and v2["description"] == "add city, widen score"
    assert v2["created_by"] == "schema-tester"
    assert fields_of(v2) == [
        (1, "ID", "int", False),
        (2, "name", "string", True),
        (3, "score", "double", True),
        (4, "ts", "timestamp", True),
        (5, "city", "string", True),
    ]
    changes = {(c["type"], c["column"], c.get("from"), c.get("to")) for c in v2["changes"]}
    assert changes == {
        ("RENAME_COLUMN", "id", "id", "ID"),
        ("CHANGE_TYPE", "score", "float", "double"),
        ("ADD_COLUMN", "city", None, "string"),
    }

    items = history(client, table["id"])
    assert [v["version"] for v in items] == [1, 2]  # oldest first
    assert items[0]["source"] == "create" and items[0]["changes"] == []
    assert items[1]["id"] == v2["id"]
    page = client.get(
        f"{API}/schema/versions/table/{table['id']}?limit=1&offset=1", headers=READER
    ).json()
    assert page["total"] == 2 and [v["version"] for v in page["items"]] == [2]

    current = client.get(f"{API}/schema/versions/table/{table['id']}/current", headers=READER)
    assert current.status_code == 200 and current.json()["id"] == v2["id"]
    one = client.get(f"{API}/schema/versions/{v2['id']}", headers=READER)
    assert one.status_code == 200 and one.json()["version"] == 2
    got = client.get(f"{API}/tables/{table['id']}", headers=READER).json()
    assert got["current_schema_version"] == 2
    assert [f["name"] for f in got["schema"]["fields"]] == ["ID", "name", "score", "ts", "city"]

    assert [a for a, _ in audit_actions(table["id"])] == ["schema.create"]


def test_unchanged_schema_returns_the_current_version(client: TestClient) -> None:
    table = make_table(client)
    r = propose(client, table["id"], BASE["fields"])
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    assert len(history(client, table["id"])) == 1
    assert audit_actions(table["id"]) == []


def test_ids_are_never_reused(client: TestClient) -> None:
    table = make_table(client)
    without_name = [f for f in BASE["fields"] if f["name"] != "name"]
    assert propose(client, table["id"], without_name).status_code == 201  # drop optional
    r = propose(client, table["id"], [*without_name, {"name": "name", "type": "string"}])
    assert r.status_code == 201, r.text
    assert fields_of(r.json())[-1] == (5, "name", "string", True)  # a new column: new id
    r = propose(client, table["id"], [*without_name, {"id": 2, "name": "x", "type": "string"}])
    assert r.status_code == 422
    assert "never reused" in r.json()["detail"]


def test_incompatible_version_is_409_with_violations(client: TestClient) -> None:
    table = make_table(client)
    hold_data(table["id"], 1)
    narrowed = [
        {"name": "id", "type": "int", "nullable": False},
        {"name": "name", "type": "long"},  # string -> long: incompatible
        {"name": "score", "type": "float"},
        {"name": "ts", "type": "timestamp"},
        {"name": "extra", "type": "string", "nullable": False},  # required: breaks BACKWARD
    ]
    r = propose(client, table["id"], narrowed)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "BACKWARD" in detail["message"]
    errors = detail["errors"]
    assert {(e["change"]["type"], e["change"]["column"]) for e in errors} == {
        ("CHANGE_TYPE", "name"),
        ("ADD_COLUMN", "extra"),
    }
    for e in errors:
        assert e["mode"] == "BACKWARD" and e["direction"] == "BACKWARD"
        assert e["against_version"] == 1 and e["change"]["breaking"] is True and e["message"]
    assert len(history(client, table["id"])) == 1  # nothing recorded


def test_transitive_mode_checks_every_earlier_version(client: TestClient) -> None:
    table = make_table(client, compatibility="FORWARD_TRANSITIVE")
    # Drop the optional 'name': FORWARD holds against version 1.
    step = [f for f in BASE["fields"] if f["name"] != "name"]
    assert propose(client, table["id"], step).status_code == 201
    # Dropping the required 'id' breaks FORWARD against both earlier versions.
    r = propose(client, table["id"], [f for f in step if f["name"] != "id"])
    assert r.status_code == 409
    errors = r.json()["detail"]["errors"]
    assert sorted(e["against_version"] for e in errors) == [1, 2]
    assert {e["mode"] for e in errors} == {"FORWARD_TRANSITIVE"}


def test_compare_schemas_and_versions(client: TestClient) -> None:
    table = make_table(client)
    old = {"fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "string"}]}
    new = {"fields": [{"name": "a", "type": "long"}, {"name": "c", "type": "double"}]}
    r = client.post(f"{API}/schema/compare", json={"old": old, "new": new}, headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["compatible"] == {"BACKWARD": True, "FORWARD": False, "FULL": False}
    assert body["mode"] == "BACKWARD"
    simple = [{k: c[k] for k in ("type", "column", "from", "to", "breaking") if k in c}
              for c in body["changes"]]
    assert simple == [
        {"type": "CHANGE_TYPE", "column": "a", "from": "int", "to": "long", "breaking": False},
        {"type": "DROP_COLUMN", "column": "b", "from": "string", "breaking": False},
        {"type": "ADD_COLUMN", "column": "c", "to": "double", "breaking": False},
    ]
    r = client.post(
        f"{API}/schema/compare", json={"old": old, "new": new, "mode": "forward"}, headers=ADMIN
    )
    assert [c["breaking"] for c in r.json()["changes"]] == [True, False, False]

    # Version ids on either side; fields without ids match the version's by name.
    v1 = history(client, table["id"])[0]["id"]
    renamed = {"fields": [{"id": 1, "name": "ident", "type": "int", "nullable": False},
                          {"name": "ts", "type": "timestamp"}]}
    r = client.post(f"{API}/schema/compare", json={"old": v1, "new": renamed}, headers=ADMIN)
    assert r.status_code == 200, r.text
    kinds = [(c["type"], c["column"]) for c in r.json()["changes"]]
    assert kinds == [("RENAME_COLUMN", "id"), ("DROP_COLUMN", "name"), ("DROP_COLUMN", "score")]
    r = client.post(f"{API}/schema/compare", json={"old": renamed, "new": v1}, headers=ADMIN)
    assert [c["type"] for c in r.json()["changes"]] == [
        "RENAME_COLUMN", "ADD_COLUMN", "ADD_COLUMN"
    ]
    r = client.post(f"{API}/schema/compare", json={"old": v1, "new": v1}, headers=ADMIN)
    assert r.json()["changes"] == []
    assert r.json()["compatible"] == {"BACKWARD": True, "FORWARD": True, "FULL": True}


def test_apply_older_version_is_a_recorded_rollback(client: TestClient) -> None:
    table = make_table(client)
    v1 = history(client, table["id"])[0]
    widened = [
        {"name": "id", "type": "long", "nullable": False},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "float"},
        {"name": "ts", "type": "timestamp"},
        {"name": "city", "type": "string"},
    ]
    v2 = propose(client, table["id"], widened).json()
    assert v2["version"] == 2
    hold_data(table["id"], 2)

    # Rolling int -> long back is a narrowing: refused under BACKWARD (the table holds
    # long values), with a hint.
    r = client.post(f"{API}/schema/versions/{v1['id']}/apply", headers=ADMIN)
    assert r.status_code == 409, r.text
    assert "NONE" in r.json()["detail"]["message"]
    assert [(e["change"]["type"], e["change"]["column"]) for e in r.json()["detail"]["errors"]] \
        == [("CHANGE_TYPE", "id")]
    assert len(history(client, table["id"])) == 2

    r = client.put(f"{API}/tables/{table['id']}", json={"compatibility": "NONE"}, headers=ADMIN)
    assert r.status_code == 200
    r = client.post(f"{API}/schema/versions/{v1['id']}/apply", headers=ADMIN)
    assert r.status_code == 201, r.text
    v3 = r.json()
    assert v3["version"] == 3 and v3["source"] == "rollback" and v3["parent_version"] == 2
    assert v3["id"] != v1["id"]
    assert v3["schema"] == v1["schema"]  # the old ids, unchanged
    assert {(c["type"], c["column"], c.get("from"), c.get("to")) for c in v3["changes"]} == {
        ("CHANGE_TYPE", "id", "long", "int"),
        ("DROP_COLUMN", "city", "string", None),
    }
    with session_scope() as session:
        rows = session.scalars(
            select(SchemaChange).where(
                SchemaChange.table_id == table["id"], SchemaChange.schema_version == 3
            )
        ).all()
        assert {(r.change_type, r.column_name, r.field_id) for r in rows} == {
            ("CHANGE_TYPE", "id", 1),
            ("DROP_COLUMN", "city", 5),
        }
        assert session.get(DataLakeSchema, v3["id"]) is not None
    current = client.get(f"{API}/schema/versions/table/{table['id']}/current", headers=READER)
    assert current.json()["version"] == 3

    # Applying the current schema again changes nothing.
    r = client.post(f"{API}/schema/versions/{v1['id']}/apply", headers=ADMIN)
    assert r.status_code == 200 and r.json()["version"] == 3

    # Re-applying version 2 rolls forward: source 'apply'; 'city' is back with its id.
    r = client.post(
        f"{API}/schema/versions/{v2['id']}/apply", json={"description": "again"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    v4 = r.json()
    assert v4["source"] == "apply" and v4["version"] == 4 and v4["description"] == "again"
    assert fields_of(v4)[-1] == (5, "city", "string", True)
    got = client.get(f"{API}/tables/{table['id']}", headers=READER).json()
    assert got["current_schema_version"] == 4

    actions = audit_actions(table["id"])
    assert [a for a, _ in actions] == ["schema.create", "schema.rollback", "schema.apply"]
    assert actions[1][1]["applied_version"] == 1 and actions[1][1]["version"] == 3
    assert actions[2][1]["applied_version"] == 2 and actions[2][1]["version"] == 4


def test_dropping_a_partition_column_is_refused(client: TestClient) -> None:
    table = make_table(client, partitioning=[{"column": "ts", "transform": "day"}])
    r = propose(client, table["id"], [f for f in BASE["fields"] if f["name"] != "ts"])
    assert r.status_code == 409
    assert "partition" in r.json()["detail"]["message"]
    # A rename follows into the partition spec.
    renamed = [f if f["name"] != "ts" else {"id": 4, "name": "event_ts", "type": "timestamp"}
               for f in BASE["fields"]]
    assert propose(client, table["id"], renamed).status_code == 201
    got = client.get(f"{API}/tables/{table['id']}", headers=READER).json()
    assert got["partitioning"][0]["column"] == "event_ts"


def test_table_without_schema_gets_its_first_version(client: TestClient) -> None:
    r = client.post(f"{API}/tables/", json={"name": "empty"}, headers=ADMIN)
    table = r.json()
    r = client.get(f"{API}/schema/versions/table/{table['id']}/current", headers=READER)
    assert r.status_code == 404
    assert history(client, table["id"]) == []
    r = propose(client, table["id"], [{"name": "a", "type": "bigint", "nullable": False}])
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["parent_version"] is None
    assert fields_of(r.json()) == [(1, "a", "long", False)]
    assert [c["type"] for c in r.json()["changes"]] == ["ADD_COLUMN"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/schema/versions", {"table_id": MISSING, "schema": BASE}, 404),
        ("get", f"/schema/versions/table/{MISSING}", None, 404),
        ("get", f"/schema/versions/table/{MISSING}/current", None, 404),
        ("get", f"/schema/versions/{MISSING}", None, 404),
        ("get", "/schema/versions/not-a-uuid", None, 404),
        ("post", f"/schema/versions/{MISSING}/apply", None, 404),
        ("post", "/schema/compare", {"old": MISSING, "new": BASE}, 404),
        ("post", "/schema/compare", {"old": BASE, "new": BASE, "mode": "SIDEWAYS"}, 422),
        ("post", "/schema/compare", {"old": BASE, "new": 42}, 422),
        ("post", "/schema/compare", {"old": {"fields": "x"}, "new": BASE}, 422),
        ("post", "/schema/compare", {"old": BASE}, 422),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    r = client.request(method.upper(), API + path, json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    assert "detail" in r.json()


@pytest.mark.parametrize(
    "schema",
    [
        {"fields": [{"name": "a", "type": "varchar2"}]},
        {"fields": "nope"},
        {"fields": [{"name": "a", "type": "int"}, {"name": "A", "type": "long"}]},
        {"fields": [{"type": "int"}]},
        {"fields": [{"name": "a", "type": "int", "id": "x"}]},
        {"fields": [{"name": "a", "type": "int", "id": 9}, {"name": "b", "type": "int", "id": 9}]},
        {"fields": []},
        {"fields": ["a"]},
        {"no": "fields"},
        "a string",
        None,
    ],
)
def test_malformed_schema_is_422(client: TestClient, schema: Any) -> None:
    table = make_table(client)
    r = client.post(
        f"{API}/schema/versions", json={"table_id": table["id"], "schema": schema}, headers=ADMIN
    )
    assert r.status_code == 422, r.text
    assert len(history(client, table["id"])) == 1


def test_roles_and_deleted_tables(client: TestClient) -> None:
    table = make_table(client)
    v1 = history(client, table["id"])[0]["id"]
    r = client.post(
        f"{API}/schema/versions", json={"table_id": table["id"], "schema": BASE}, headers=READER
    )
    assert r.status_code == 403
    assert client.post(f"{API}/schema/versions/{v1}/apply", headers=auth("writer")).status_code \
        == 403
    assert client.get(f"{API}/schema/versions/table/{table['id']}").status_code == 401
    assert client.delete(f"{API}/tables/{table['id']}", headers=ADMIN).status_code == 200
    assert client.get(f"{API}/schema/versions/table/{table['id']}", headers=READER).status_code \
        == 404
    r = client.post(
        f"{API}/schema/versions", json={"table_id": table["id"], "schema": BASE}, headers=ADMIN
    )
    assert r.status_code == 404
