"""The catalog's questions about schema versions and their recorded changes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from datalake.catalog.models import DataLakeSchema, SchemaChange
from datalake.catalog.paging import page
from datalake.domain.compat import Change


class SchemaQueries:
    """A table's schema versions (one lookup per question) and their SchemaChange rows."""

    session: Session

    def schema_at(self, table_id: str, version: int | None) -> DataLakeSchema | None:
        """The version row of a table's schema at ``version`` (None for None or unknown)."""
        if version is None:
            return None
        return self.session.scalar(
            select(DataLakeSchema).where(
                DataLakeSchema.table_id == table_id, DataLakeSchema.version == version
            )
        )

    def schema_version(self, version_id: str) -> DataLakeSchema | None:
        """A version row by its id, or None."""
        return self.session.get(DataLakeSchema, version_id)

    def schema_history(self, table_id: str) -> list[DataLakeSchema]:
        """Every version row of a table, oldest first."""
        return list(
            self.session.scalars(
                select(DataLakeSchema)
                .where(DataLakeSchema.table_id == table_id)
                .order_by(DataLakeSchema.version)
            ).all()
        )

    def schema_versions_page(
        self, table_id: str, *, limit: int, offset: int
    ) -> tuple[list[DataLakeSchema], int]:
        """A page of a table's version rows, oldest first, and their total."""
        query = select(DataLakeSchema).where(DataLakeSchema.table_id == table_id)
        return page(
            self.session, query, order_by=DataLakeSchema.version, limit=limit, offset=offset
        )

    def last_schema_version(self, table_id: str) -> int:
        """The highest version number a table has recorded (0 when it has none)."""
        latest = self.session.scalar(
            select(DataLakeSchema.version)
            .where(DataLakeSchema.table_id == table_id)
            .order_by(DataLakeSchema.version.desc())
            .limit(1)
        )
        return latest or 0

    def schema_changes(
        self, table_id: str, versions: Sequence[int] | None = None
    ) -> dict[int, list[SchemaChange]]:
        """A table's SchemaChange rows by version (of ``versions``, or all), in order."""
        query = select(SchemaChange).where(SchemaChange.table_id == table_id)
        if versions is not None:
            if not versions:
                return {}
            query = query.where(SchemaChange.schema_version.in_(list(versions)))
        out: dict[int, list[SchemaChange]] = defaultdict(list)
        ordered = query.order_by(SchemaChange.schema_version, SchemaChange.created_at)
        for row in self.session.scalars(ordered):
            out[row.schema_version].append(row)
        return out

    def add_schema_version(
        self, row: DataLakeSchema, changes: Sequence[Change]
    ) -> DataLakeSchema:
        """Add a version row and one SchemaChange row per change, and write them now."""
        self.session.add(row)
        for change in changes:
            self.session.add(
                SchemaChange(
                    table_id=row.table_id,
                    schema_version=row.version,
                    change_type=change.type,
                    column_name=change.column,
                    field_id=change.field_id,
                    from_value=None if change.from_ is None else str(change.from_),
                    to_value=None if change.to is None else str(change.to),
                    breaking=change.breaking_backward or change.breaking_forward,
                )
            )
        self.session.flush()
        return row
