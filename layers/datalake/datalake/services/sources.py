"""Data sources: a bucket/prefix whose new objects are ingested into a table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from datalake.catalog.models import DataLakeTable, DataSource
from datalake.catalog.paging import page
from datalake.config import get_settings
from datalake.errors import Conflict, InvalidInput
from datalake.services.jobs import (
    check_source_location,
    validate_options,
    validate_source_format,
)
from datalake.services.tables import get_table


def create_source(
    session: Session,
    *,
    name: str,
    table_id: str,
    bucket: str,
    prefix: str = "",
    format: str | None = None,
    options: dict[str, Any] | None = None,
) -> DataSource:
    """Register a source; objects created under ``bucket/prefix`` start jobs for the table.

    Raises
    ------
    NotFound
        When the table does not exist.
    Conflict
        When a source of that name exists.
    """
    get_table(session, table_id)
    if not name or not bucket:
        raise InvalidInput("name and bucket are required")
    check_source_location(bucket, prefix)
    source_format = validate_source_format(format)
    # Checked now, not at the first upload: a bad option would fail every job it starts.
    validate_options(options, get_settings())
    source = DataSource(
        name=name,
        table_id=table_id,
        bucket=bucket,
        prefix=prefix.lstrip("/"),
        format=source_format,
        options=options or {},
    )
    session.add(source)
    try:
        session.flush()
    except IntegrityError as e:
        raise Conflict(f"source {name!r} already exists") from e
    return source


def list_sources(
    session: Session, *, limit: int = 100, offset: int = 0, table_id: str | None = None
) -> tuple[list[DataSource], int]:
    """Sources, newest first, and their total count."""
    query = select(DataSource)
    if table_id:
        query = query.where(DataSource.table_id == table_id)
    return page(session, query, order_by=DataSource.created_at.desc(), limit=limit, offset=offset)


def match_sources(session: Session, bucket: str, key: str) -> list[DataSource]:
    """The enabled sources of live tables whose bucket and prefix cover an object key.

    A disabled source, or one whose table is soft-deleted (deleting a table disables its
    sources; the join also covers sources of tables deleted before that), matches nothing.
    """
    rows = session.scalars(
        select(DataSource)
        .join(DataLakeTable, DataLakeTable.id == DataSource.table_id)
        .where(
            DataSource.bucket == bucket,
            DataSource.enabled.is_(True),
            DataLakeTable.deleted_at.is_(None),
        )
    ).all()
    return [s for s in rows if key.startswith(s.prefix)]
