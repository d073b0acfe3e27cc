"""The read endpoints of the Apache Iceberg REST catalog specification.

An engine attaches to ``<API>/api/v1/iceberg`` as an Iceberg REST catalog with a bearer
token (role ``reader``) and no database credentials: config, namespaces (list, get,
exists), tables (list, exists) and load table. Writes are not served (the ingestion
pipeline is the only writer). Answers come from our catalog (the live tables) and the
Iceberg catalog's pointer to each table's current metadata file, whose JSON is returned
as stored (``datalake.services.iceberg_refs``: boto3 only, no pyiceberg, no pyarrow).

Errors follow the specification's ``ErrorModel``: ``{"error": {"message", "type",
"code"}}``, so REST clients raise their own "no such table/namespace" errors.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from datalake.catalog.models import DataLakeTable
from datalake.config import get_settings
from datalake.services import iceberg_refs, tables
from datalake_api.deps import PrincipalDep, SessionDep

router = APIRouter(prefix="/iceberg/v1", tags=["iceberg"])
#: The namespace separator of multi-level namespaces in REST paths (the spec's 0x1F).
SEPARATOR = "\x1f"


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "code": status}}
    )


def _no_namespace(ns: str) -> JSONResponse:
    return _error(404, "NoSuchNamespaceException", f"Namespace does not exist: {ns}")


def _namespace(raw: str) -> str:
    return ".".join(part for part in raw.split(SEPARATOR) if part)


def _live(session: SessionDep, namespace: str | None = None) -> list[DataLakeTable]:
    return tables.live_tables(session, namespace)


def _client_config() -> dict[str, str]:
    """FileIO hints for clients: the region, and the S3 endpoint when not AWS's own
    (LocalStack). No credentials: a client reads the lake with its own."""
    settings = get_settings()
    config = {"s3.region": settings.aws_region}
    endpoint = settings.s3_endpoint_url
    if endpoint:
        config["s3.endpoint"] = endpoint
        config["s3.path-style-access"] = "true"
    return config


@router.get("/config")
def get_config(who: PrincipalDep, warehouse: str | None = None) -> dict[str, Any]:
    """``GET /v1/config``: no prefix, and the endpoints this server implements."""
    who.require("reader")
    return {
        "defaults": {},
        "overrides": {},
        "endpoints": [
            "GET /v1/{prefix}/namespaces",
            "GET /v1/{prefix}/namespaces/{namespace}",
            "HEAD /v1/{prefix}/namespaces/{namespace}",
            "GET /v1/{prefix}/namespaces/{namespace}/tables",
            "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
            "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
        ],
    }


@router.get("/namespaces")
def list_namespaces(
    session: SessionDep, who: PrincipalDep, parent: str | None = None
) -> dict[str, Any]:
    """``GET /v1/namespaces``: the namespaces of live tables (one level)."""
    who.require("reader")
    if parent:  # our namespaces have one level: nothing lies below one
        return {"namespaces": []}
    names = sorted({t.namespace for t in _live(session)})
    return {"namespaces": [[n] for n in names]}


@router.get("/namespaces/{namespace}", response_model=None)
def load_namespace(
    namespace: str, session: SessionDep, who: PrincipalDep
) -> dict[str, Any] | JSONResponse:
    """``GET /v1/namespaces/{namespace}``."""
    who.require("reader")
    ns = _namespace(namespace)
    if not _live(session, ns):
        return _no_namespace(ns)
    return {"namespace": [ns], "properties": {}}


#: HEAD answers carry no body, so their 404 has no error model.
_HEAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "It exists."},
    404: {"description": "It does not exist (no body)."},
}


@router.head("/namespaces/{namespace}", response_model=None, responses=_HEAD_RESPONSES)
def namespace_exists(namespace: str, session: SessionDep, who: PrincipalDep) -> Response:
    """``HEAD /v1/namespaces/{namespace}``: 204 or 404."""
    who.require("reader")
    return Response(status_code=204 if _live(session, _namespace(namespace)) else 404)


@router.get("/namespaces/{namespace}/tables", response_model=None)
def list_tables(
    namespace: str, session: SessionDep, who: PrincipalDep
) -> dict[str, Any] | JSONResponse:
    """``GET /v1/namespaces/{namespace}/tables``: the live tables published as Iceberg."""
    who.require("reader")
    ns = _namespace(namespace)
    live = _live(session, ns)
    if not live:
        return _no_namespace(ns)
    return {
        "identifiers": [
            {"namespace": [ns], "name": t.name}
            for t in live
            if iceberg_refs.metadata_location(session, t.namespace, t.name)
        ]
    }


def _location(session: SessionDep, namespace: str, table: str) -> str | None:
    ns = _namespace(namespace)
    if not any(t.name == table for t in _live(session, ns)):
        return None
    return iceberg_refs.metadata_location(session, ns, table)


@router.get("/namespaces/{namespace}/tables/{table}", response_model=None)
def load_table(
    namespace: str, table: str, session: SessionDep, who: PrincipalDep
) -> dict[str, Any] | JSONResponse:
    """``GET /v1/namespaces/{namespace}/tables/{table}``: the current metadata, as stored."""
    who.require("reader")
    location = _location(session, namespace, table)
    if location is None:
        return _error(
            404, "NoSuchTableException",
            f"Table does not exist: {_namespace(namespace)}.{table}",
        )
    return {
        "metadata-location": location,
        "metadata": iceberg_refs.read_metadata(location),
        "config": _client_config(),
    }


@router.head(
    "/namespaces/{namespace}/tables/{table}", response_model=None, responses=_HEAD_RESPONSES
)
def table_exists(namespace: str, table: str, session: SessionDep, who: PrincipalDep) -> Response:
    """``HEAD /v1/namespaces/{namespace}/tables/{table}``: 204 or 404."""
    who.require("reader")
    return Response(status_code=204 if _location(session, namespace, table) else 404)
