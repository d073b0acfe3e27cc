"""Schema versions of a table: record new versions and their changes, optimistically."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from datalake.catalog.models import DataLakeSchema, DataLakeTable, SchemaChange, utcnow
from datalake.domain.compat import Change, compare
from datalake.domain.schema import Schema
from datalake.errors import CommitConflict


def record_version(
    session: Session,
    table: DataLakeTable,
    schema: Schema,
    *,
    source: str,
    description: str | None = None,
    actor: str | None = None,
    job_id: str | None = None,
    changes: list[Change] | None = None,
) -> DataLakeSchema:
    """Add ``schema`` as the table's next version and make it current.

    The table row is bumped with ``UPDATE ... WHERE version = :expected``: two writers
    that evolve the same table at once cannot both win; the loser gets
    :class:`CommitConflict` and re-plans on the new current schema.
    """
    old_version = table.current_schema_version
    old = Schema()
    if old_version is not None:
        row = session.scalar(
            select(DataLakeSchema).where(
                DataLakeSchema.table_id == table.id, DataLakeSchema.version == old_version
            )
        )
        old = Schema.from_json(row.schema) if row else Schema()
    new_version = (
        session.scalar(
            select(DataLakeSchema.version)
            .where(DataLakeSchema.table_id == table.id)
            .order_by(DataLakeSchema.version.desc())
            .limit(1)
        )
        or 0
    ) + 1
    result = session.execute(
        update(DataLakeTable)
        .where(DataLakeTable.id == table.id, DataLakeTable.version == table.version)
        .values(
            current_schema_version=new_version,
            last_column_id=max(table.last_column_id, schema.max_id),
            version=table.version + 1,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise CommitConflict(f"table {table.id} changed concurrently")
    session.refresh(table)
    row = DataLakeSchema(
        table_id=table.id,
        version=new_version,
        schema=schema.to_json(),
        description=description,
        source=source,
        parent_version=old_version,
        job_id=job_id,
        created_by=actor,
    )
    session.add(row)
    for change in changes if changes is not None else compare(old, schema):
        session.add(
            SchemaChange(
                table_id=table.id,
                schema_version=new_version,
                change_type=change.type,
                column_name=change.column,
                field_id=change.field_id,
                from_value=None if change.from_ is None else str(change.from_),
                to_value=None if change.to is None else str(change.to),
                breaking=change.breaking_backward or change.breaking_forward,
            )
        )
    session.flush()
    return row


def schema_at(session: Session, table_id: str, version: int | None) -> Schema:
    """The table's schema at a version (empty for ``None``)."""
    if version is None:
        return Schema()
    row = session.scalar(
        select(DataLakeSchema).where(
            DataLakeSchema.table_id == table_id, DataLakeSchema.version == version
        )
    )
    return Schema.from_json(row.schema) if row else Schema()
