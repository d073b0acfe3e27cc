"""The catalog's questions about data sources."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from datalake.catalog.models import DataLakeTable, DataSource, utcnow
from datalake.catalog.paging import page


class SourceQueries:
    """Sources by table and by bucket; disabling a table's sources."""

    session: Session

    def sources_page(
        self, *, table_id: str | None = None, limit: int, offset: int
    ) -> tuple[list[DataSource], int]:
        """A page of the sources (of one table), newest first, and their total."""
        query = select(DataSource)
        if table_id:
            query = query.where(DataSource.table_id == table_id)
        return page(
            self.session, query, order_by=DataSource.created_at.desc(), limit=limit,
            offset=offset,
        )

    def enabled_sources_in(self, bucket: str) -> list[DataSource]:
        """The enabled sources of live tables that read ``bucket`` (any prefix)."""
        rows = self.session.scalars(
            select(DataSource)
            .join(DataLakeTable, DataLakeTable.id == DataSource.table_id)
            .where(
                DataSource.bucket == bucket,
                DataSource.enabled.is_(True),
                DataLakeTable.deleted_at.is_(None),
            )
        ).all()
        return list(rows)

    def disable_sources_of(self, table_id: str) -> None:
        """Disable every enabled source of a table (its uploads start nothing more)."""
        self.session.execute(
            update(DataSource)
            .where(DataSource.table_id == table_id, DataSource.enabled.is_(True))
            .values(enabled=False, updated_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
