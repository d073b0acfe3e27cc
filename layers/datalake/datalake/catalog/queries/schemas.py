"""The catalog's questions about schema versions and their recorded changes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from datalake.catalog.models import DataFile, DataLakeSchema, IngestionJob, SchemaChange
from datalake.catalog.paging import page
from datalake.domain.compat import Change
from datalake.domain.vocabulary import JobStatus

#: Jobs whose schema version holds no data of theirs and never will.
_UNSUCCESSFUL = (JobStatus.FAILED, JobStatus.CANCELLED)


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

    def lock_schema_version(
        self, table_id: str, version: int, *, shared: bool = False
    ) -> DataLakeSchema | None:
        """Read a version row as stored and lock it to the end of the transaction:
        ``FOR SHARE`` (``shared``: a job planned on it; such locks do not exclude each
        other) or ``FOR UPDATE`` (retiring it) on Postgres; SQLite's write lock is held
        already. None when the row does not exist (or was deleted before the lock)."""
        return self.session.scalar(
            select(DataLakeSchema)
            .where(DataLakeSchema.table_id == table_id, DataLakeSchema.version == version)
            .with_for_update(read=shared)
            .execution_options(populate_existing=True)
        )

    def schema_versions_written(self, table_id: str) -> set[int] | None:
        """The versions some data of the table was written with: a file row of any status
        (pending, committed, replaced but kept, corrupt) or a running job's version.

        None when a file row carries no version (it predates them): then any version may
        hold data.
        """
        files = set(
            self.session.scalars(
                select(DataFile.schema_version).where(DataFile.table_id == table_id).distinct()
            )
        )
        if None in files:
            return None
        running = self.session.scalars(
            select(IngestionJob.schema_version)
            .where(
                IngestionJob.table_id == table_id,
                IngestionJob.status == JobStatus.RUNNING,
                IngestionJob.schema_version.is_not(None),
            )
            .distinct()
        )
        return {int(v) for v in (*files, *running) if v is not None}

    def schema_version_in_use(self, table_id: str, version: int) -> bool:
        """Whether a file row holds data of ``version``, or a job that has not failed or
        been cancelled (running, or succeeded) was planned on it."""
        files = exists().where(DataFile.table_id == table_id, DataFile.schema_version == version)
        jobs = exists().where(
            IngestionJob.table_id == table_id,
            IngestionJob.schema_version == version,
            IngestionJob.status.not_in(_UNSUCCESSFUL),
        )
        return bool(self.session.scalar(select(files | jobs)))

    def delete_schema_version(self, table_id: str, version: int) -> None:
        """Delete a version row and its SchemaChange rows, and unlink the failed and
        cancelled jobs planned on it (their ``schema_version`` becomes null)."""
        self.session.execute(
            update(IngestionJob)
            .where(
                IngestionJob.table_id == table_id,
                IngestionJob.schema_version == version,
                IngestionJob.status.in_(_UNSUCCESSFUL),
            )
            .values(schema_version=None)
            .execution_options(synchronize_session="fetch")
        )
        self.session.execute(
            delete(SchemaChange).where(
                SchemaChange.table_id == table_id, SchemaChange.schema_version == version
            )
        )
        self.session.execute(
            delete(DataLakeSchema)
            .where(DataLakeSchema.table_id == table_id, DataLakeSchema.version == version)
            .execution_options(synchronize_session="fetch")
        )
