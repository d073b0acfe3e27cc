"""The catalog's questions about tables, their partitions and the files of a snapshot."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, func, literal, or_, select
from sqlalchemy.orm import Session

from datalake.catalog import snapshots
from datalake.catalog.models import ICEBERG_TABLES, DataFile, DataLakeSchema, DataLakeTable
from datalake.catalog.paging import page


@cache
def _table_view_query(*, iceberg: bool) -> Select[Any]:
    """The statement of :meth:`TableQueries.table_view`, built once: building it took
    longer than running it (bound parameters ``table_id`` and ``iceberg_catalog``)."""
    tables, schemas = DataLakeTable.__table__.c, DataLakeSchema.__table__.c
    location: Any = literal(None).label("metadata_location")
    query = select(*tables, schemas.schema.label("schema_doc")).outerjoin(
        DataLakeSchema.__table__,
        and_(schemas.table_id == tables.id, schemas.version == tables.current_schema_version),
    )
    if iceberg:
        ice = ICEBERG_TABLES.c
        location = ice.metadata_location
        query = query.outerjoin(
            ICEBERG_TABLES,
            and_(
                ice.catalog_name == bindparam("iceberg_catalog"),
                ice.table_namespace == tables.namespace,
                ice.table_name == tables.name,
            ),
        )
    return query.add_columns(location).where(tables.id == bindparam("table_id"))


class TableQueries:
    """Tables (live or soft-deleted), a table's partitions by path, a snapshot's files."""

    session: Session

    def table(self, table_id: str) -> DataLakeTable | None:
        """The table of that id, live or soft-deleted; None when there is none."""
        return self.session.get(DataLakeTable, table_id)

    def table_as_stored(self, table_id: str) -> DataLakeTable | None:
        """The table row as committed now (the session's copy refreshed), or None."""
        return self.session.get(DataLakeTable, table_id, populate_existing=True)

    def table_view(self, table_id: str, *, iceberg_catalog: str | None) -> Row[Any] | None:
        """A table's columns, its current schema document (``schema_doc``) and, when
        ``iceberg_catalog`` names an Iceberg SQL catalog in this database, its metadata
        pointer (``metadata_location``), in one statement; None when there is no table.

        For answers only (``GET /tables/{id}``): one round trip and no ORM objects in
        place of three ORM selects, most of that route's CPU.
        """
        query = _table_view_query(iceberg=iceberg_catalog is not None)
        params = {"table_id": table_id}
        if iceberg_catalog is not None:
            params["iceberg_catalog"] = iceberg_catalog
        return self.session.connection().execute(query, params).first()

    def live_tables_page(
        self, *, namespace: str | None = None, limit: int, offset: int
    ) -> tuple[list[DataLakeTable], int]:
        """A page of the live tables (of one namespace), newest first, and their total."""
        query = select(DataLakeTable).where(DataLakeTable.deleted_at.is_(None))
        if namespace:
            query = query.where(DataLakeTable.namespace == namespace)
        return page(
            self.session, query, order_by=DataLakeTable.created_at.desc(), limit=limit,
            offset=offset,
        )

    def live_tables_by_name(self, namespace: str | None = None) -> list[DataLakeTable]:
        """Every live table (of one namespace), in namespace and name order."""
        query = select(DataLakeTable).where(DataLakeTable.deleted_at.is_(None))
        if namespace is not None:
            query = query.where(DataLakeTable.namespace == namespace)
        return list(
            self.session.scalars(query.order_by(DataLakeTable.namespace, DataLakeTable.name))
        )

    def snapshot_files(
        self,
        table_id: str,
        seq: int,
        *,
        after: tuple[str, str] | None = None,
        offset: int = 0,
        limit: int,
    ) -> tuple[list[DataFile], int]:
        """Files of a table's snapshot ``seq`` in ``(key, id)`` order, and their total.

        Parameters
        ----------
        table_id, seq:
            The table and the file sequence number of the snapshot.
        after:
            A keyset cursor ``(key, id)``: only files after it are returned (the total
            still counts the whole snapshot).
        offset, limit:
            The page window after the cursor.
        """
        members = select(DataFile).where(
            DataFile.table_id == table_id, snapshots.in_snapshot(seq)
        )
        total = self.session.scalar(select(func.count()).select_from(members.subquery())) or 0
        query = members
        if after is not None:
            key, file_id = after
            query = query.where(
                or_(DataFile.key > key, and_(DataFile.key == key, DataFile.id > file_id))
            )
        rows = self.session.scalars(
            query.order_by(DataFile.key, DataFile.id).offset(offset).limit(limit)
        ).all()
        return list(rows), int(total)
