"""The reference for ``bench/api.py``: the same two reads with no framework.

A bare Starlette app on the same uvicorn, answering ``GET /tables/{id}`` and the jobs
page with the SQL the catalog runs for them (the table with its current schema and
Iceberg pointer; a count and a page of 50 jobs) through one psycopg connection per
process in autocommit, as plain JSON. No auth, validation, middleware, ORM or response
models: what Python, the ASGI server and Postgres cost on this machine, the floor the
API's throughput is compared with.

Served by ``uvicorn reference_api:app`` with ``REFERENCE_DATABASE_URL`` (a libpq URL).
"""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_conn: psycopg.Connection[Any] | None = None

TABLE_SQL = """
SELECT t.*, s.schema AS schema_doc, i.metadata_location
FROM datalake_tables t
LEFT OUTER JOIN datalake_schemas s
  ON s.table_id = t.id AND s.version = t.current_schema_version
LEFT OUTER JOIN iceberg_tables i
  ON i.catalog_name = %s AND i.table_namespace = t.namespace AND i.table_name = t.name
WHERE t.id = %s
"""
COUNT_SQL = "SELECT count(*) FROM ingestion_jobs"
PAGE_SQL = "SELECT * FROM ingestion_jobs ORDER BY created_at DESC LIMIT %s OFFSET %s"


def _db() -> psycopg.Connection[Any]:
    global _conn
    if _conn is None:
        _conn = psycopg.connect(os.environ["REFERENCE_DATABASE_URL"], autocommit=True)
    return _conn


def _json(value: Any, status_code: int = 200) -> Response:
    return Response(
        json.dumps(value, default=str), status_code=status_code, media_type="application/json"
    )


async def table(request: Request) -> Response:
    cur = _db().execute(TABLE_SQL, ("lake", request.path_params["table_id"]))
    row = cur.fetchone()
    if row is None:
        return _json({"detail": "no such table"}, 404)
    return _json(dict(zip([d.name for d in cur.description or ()], row, strict=True)))


async def jobs(request: Request) -> Response:
    limit = int(request.query_params.get("limit", 100))
    db = _db()
    total = db.execute(COUNT_SQL).fetchone()
    cur = db.execute(PAGE_SQL, (limit, 0))
    names = [d.name for d in cur.description or ()]
    items = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return _json({"items": items, "total": total[0] if total else 0})


app = Starlette(
    routes=[
        Route("/api/v1/tables/{table_id}", table),
        Route("/api/v1/ingestion/jobs", jobs),
    ]
)
