"""Data sources: a bucket/prefix whose new objects are ingested into a table."""

from __future__ import annotations

from typing import Any

from datalake.catalog.models import DataSource, utcnow
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.config import get_settings
from datalake.domain.source_objects import ignored_by, parse_ignore_patterns
from datalake.errors import InvalidInput, NotFound
from datalake.services import audit
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
    ignore: list[str] | None = None,
    actor: str = "system",
    correlation_id: str | None = None,
) -> DataSource:
    """Register a source; objects created under ``bucket/prefix`` start jobs for the table.

    ``ignore`` lists glob patterns of uploads that start no job (``["*.tmp"]``, see
    :func:`~datalake.domain.source_objects.ignored_by`). ``actor`` and ``correlation_id``
    go on its ``source.create`` audit event.

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
    patterns = parse_ignore_patterns(ignore)
    source = DataSource(
        name=name,
        table_id=table_id,
        bucket=bucket,
        prefix=prefix.lstrip("/"),
        format=source_format,
        options=options or {},
        ignore=patterns,
    )
    SqlCatalog(session).insert(source, conflict=f"source {name!r} already exists")
    audit.record(
        session,
        actor=actor,
        action="source.create",
        entity_type="source",
        entity_id=source.id,
        details={"bucket": source.bucket, "prefix": source.prefix, "table_id": source.table_id,
                 "ignore": patterns},
        correlation_id=correlation_id,
    )
    return source


def list_sources(
    session: Session, *, limit: int = 100, offset: int = 0, table_id: str | None = None
) -> tuple[list[DataSource], int]:
    """Sources, newest first, and their total count."""
    return SqlCatalog(session).sources_page(table_id=table_id, limit=limit, offset=offset)


def get_source(session: Session, source_id: str) -> DataSource:
    """The source of that id (enabled or not).

    Raises
    ------
    NotFound
        When no source has that id.
    """
    source = SqlCatalog(session).get(DataSource, source_id)
    if source is None:
        raise NotFound(f"source {source_id} not found")
    return source


def disable_source(
    session: Session, source_id: str, *, actor: str = "system", correlation_id: str | None = None
) -> DataSource:
    """Disable a source: its later uploads start nothing; it and its jobs stay listed.

    Disabling a disabled source changes nothing (and records nothing again).

    Raises
    ------
    NotFound
        When no source has that id.
    """
    source = get_source(session, source_id)
    if source.enabled:
        source.enabled = False
        source.updated_at = utcnow()
        audit.record(session, actor=actor, action="source.delete", entity_type="source",
                     entity_id=source.id, correlation_id=correlation_id)
    return source


def match_sources(session: Session, bucket: str, key: str) -> list[DataSource]:
    """The enabled sources of live tables whose bucket and prefix cover an object key and
    whose ignore patterns do not name it.

    A disabled source, or one whose table is soft-deleted (deleting a table disables its
    sources; the join also covers sources of tables deleted before that), matches nothing.
    """
    return [
        s for s in SqlCatalog(session).enabled_sources_in(bucket)
        if key.startswith(s.prefix) and ignored_by(key, s.prefix, s.ignore) is None
    ]
