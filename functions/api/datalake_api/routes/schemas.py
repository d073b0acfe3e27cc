"""Schema versions: propose, list, read the current one, compare, apply (roll back).

Reads need the ``reader`` role, writes (and compare, a schema-registry operation) the
``admin`` role. Errors come from :mod:`datalake.errors` and are mapped by the one
exception handler: 404 unknown table or version, 422 malformed schema or mode, 409 a
change that breaks the table's compatibility mode (``{"detail": {"message", "errors"}}``
with one violation per breaking change and checked version).
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from datalake.catalog.models import DataLakeSchema
from datalake.catalog.sql_catalog import Session
from datalake.services import schemas
from datalake_api import presenters
from datalake_api.deps import CorrelationDep, PrincipalDep, SessionDep
from datalake_api.models import (
    Page,
    SchemaApply,
    SchemaCompare,
    SchemaCompareOut,
    SchemaVersionCreate,
    SchemaVersionOut,
)
from datalake_api.params import Limit, Offset, TableId, VersionId

router = APIRouter(prefix="/schema", tags=["schemas"])


def version_out(session: Session, row: DataLakeSchema) -> SchemaVersionOut:
    changes = schemas.changes_by_version(session, row.table_id, [row.version])
    return presenters.version_out(row, changes.get(row.version, []))


@router.post("/versions", status_code=status.HTTP_201_CREATED)
def create_version(
    body: SchemaVersionCreate,
    response: Response,
    session: SessionDep,
    who: PrincipalDep,
    cid: CorrelationDep,
) -> SchemaVersionOut:
    """Propose a schema: 201 with the new version, 200 with the current one if unchanged."""
    who.require("admin")
    result = schemas.create_version(
        session,
        body.table_id,
        body.schema_,
        description=body.description,
        actor=who.subject,
        correlation_id=cid,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return version_out(session, result.version)


@router.get("/versions/table/{table_id}")
def list_versions(
    table_id: TableId,
    session: SessionDep,
    who: PrincipalDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[SchemaVersionOut]:
    """A table's schema history, oldest first."""
    who.require("reader")
    rows, total = schemas.list_versions(session, table_id, limit=limit, offset=offset)
    changes = schemas.changes_by_version(session, table_id, [r.version for r in rows])
    items = [presenters.version_out(row, changes.get(row.version, [])) for row in rows]
    return Page(items=items, total=total)


@router.get("/versions/table/{table_id}/current")
def current_version(table_id: TableId, session: SessionDep, who: PrincipalDep) -> SchemaVersionOut:
    """The table's current version (404 when the table has no schema yet)."""
    who.require("reader")
    return version_out(session, schemas.current_version(session, table_id))


@router.get("/versions/{version_id}")
def get_version(version_id: VersionId, session: SessionDep, who: PrincipalDep) -> SchemaVersionOut:
    """One version by id."""
    who.require("reader")
    return version_out(session, schemas.get_version(session, version_id))


@router.post("/versions/{version_id}/apply", status_code=status.HTTP_201_CREATED)
def apply_version(
    version_id: VersionId,
    response: Response,
    session: SessionDep,
    who: PrincipalDep,
    cid: CorrelationDep,
    body: SchemaApply | None = None,
) -> SchemaVersionOut:
    """Make a version current, recorded as a new version (a rollback if it is older)."""
    who.require("admin")
    result = schemas.apply_version(
        session,
        version_id,
        description=body.description if body else None,
        actor=who.subject,
        correlation_id=cid,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return version_out(session, result.version)


@router.post("/compare")
def compare(body: SchemaCompare, session: SessionDep, who: PrincipalDep) -> SchemaCompareOut:
    """Compare two schemas or versions; ``breaking`` is relative to ``mode``."""
    who.require("admin")
    return presenters.comparison_out(
        schemas.compare_schemas(session, body.old, body.new, mode=body.mode)
    )
