"""The API's forms of catalog rows and service results that its models cannot read as is.

Rows whose columns are the answer's fields are read by the models themselves
(``from_attributes``); what needs shaping (schema versions with their recorded changes,
comparisons) is shaped here, not in the shared library's services.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datalake.catalog.models import DataLakeSchema, SchemaChange
from datalake.services.schemas import SchemaComparison
from datalake_api.models import SchemaCompareOut, SchemaVersionOut


def change_json(row: SchemaChange) -> dict[str, Any]:
    """The API form of a recorded change.

    ``{"type", "column", "field_id", "from"?, "to"?, "breaking"}``; ``breaking`` is the
    recorded flag: the change breaks BACKWARD or FORWARD reading (whatever the mode).
    """
    out: dict[str, Any] = {"type": row.change_type, "column": row.column_name}
    if row.field_id is not None:
        out["field_id"] = row.field_id
    if row.from_value is not None:
        out["from"] = row.from_value
    if row.to_value is not None:
        out["to"] = row.to_value
    out["breaking"] = bool(row.breaking)
    return out


def version_out(row: DataLakeSchema, changes: Sequence[SchemaChange] = ()) -> SchemaVersionOut:
    """The API form of a version row and its recorded changes."""
    return SchemaVersionOut(
        id=row.id,
        table_id=row.table_id,
        version=row.version,
        schema_=row.schema,
        description=row.description,
        source=row.source,
        parent_version=row.parent_version,
        job_id=row.job_id,
        created_by=row.created_by,
        created_at=row.created_at,
        changes=[change_json(c) for c in changes],
    )


def comparison_out(result: SchemaComparison) -> SchemaCompareOut:
    """The API form of a comparison: each change in full, ``breaking`` relative to its mode."""
    return SchemaCompareOut(
        changes=[c.to_json(result.mode, detail=True) for c in result.changes],
        compatible=result.compatible,
        mode=result.mode,
    )
