"""Table use cases: create, read, list, update and soft-delete tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from datalake.catalog import snapshots
from datalake.catalog.models import DataFile, DataLakeSchema, DataLakeTable, utcnow
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.config import get_settings
from datalake.domain.compat import validate_mode
from datalake.domain.evolution import validate_policy
from datalake.domain.formats import TableFormat
from datalake.domain.partitioning import parse_partitioning
from datalake.domain.schema import Schema
from datalake.domain.vocabulary import DEFAULT_SCHEMA_POLICY
from datalake.errors import InvalidInput, NotFound
from datalake.ports import Catalog
from datalake.services import audit, iceberg_refs

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def validate_name(value: str, what: str) -> str:
    """Table and namespace names become S3 path segments: keep them simple."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(
            f"{what} {value!r} must start with a letter or _ and hold only letters, digits and _"
        )
    return value


def validate_format(fmt: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the table's Parquet output options (:class:`TableFormat`), as stored."""
    return TableFormat.parse(fmt).to_json()


def validate_ratio(value: Any) -> float | None:
    """The quality gate's ``max_rejected_ratio``: ``None`` (off) or a number in [0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInput("max_rejected_ratio must be a number between 0 and 1, or null")
    return float(value)


def _check_partition_columns(schema: Schema, partitioning: list[Any]) -> None:
    if not len(schema):
        return
    for pf in parse_partitioning(partitioning):
        if schema.find(pf.column) is None:
            raise InvalidInput(f"partition column {pf.column!r} is not in the schema")


def create_table(
    session: Session,
    *,
    name: str,
    namespace: str = "default",
    schema: dict[str, Any] | None = None,
    partitioning: list[Any] | None = None,
    schema_policy: str = DEFAULT_SCHEMA_POLICY,
    compatibility: str = "BACKWARD",
    format: dict[str, Any] | None = None,
    description: str | None = None,
    max_rejected_ratio: float | None = None,
    actor: str = "system",
    correlation_id: str | None = None,
) -> DataLakeTable:
    """Create a table, and its schema version 1 when a schema is given.

    ``actor`` and ``correlation_id`` go on its ``table.create`` audit event.

    Raises
    ------
    InvalidInput
        For a bad name, schema, partition spec, policy or format.
    Conflict
        When a live table of that name exists in the namespace.
    """
    validate_name(name, "table name")
    validate_name(namespace, "namespace")
    policy = validate_policy(schema_policy)
    compatibility = validate_mode(compatibility)
    parsed = Schema.from_json(schema) if schema is not None else Schema()
    spec = [pf.model_dump() for pf in parse_partitioning(partitioning)]
    _check_partition_columns(parsed, spec)
    table = DataLakeTable(
        name=name,
        live_name=name,
        namespace=namespace,
        description=description,
        partitioning=spec,
        schema_policy=policy,
        compatibility=compatibility,
        format=validate_format(format),
        max_rejected_ratio=validate_ratio(max_rejected_ratio),
        last_column_id=parsed.max_id,
    )
    catalog: Catalog = SqlCatalog(session)
    catalog.insert(table, conflict=f"table {namespace}.{name} already exists")
    if len(parsed):
        catalog.add(
            DataLakeSchema(
                table_id=table.id,
                version=1,
                schema=parsed.to_json(),
                description="initial schema",
                source="create",
                created_by=actor,
            )
        )
        table.current_schema_version = 1
    catalog.flush()
    audit.record(
        session,
        actor=actor,
        action="table.create",
        entity_type="table",
        entity_id=table.id,
        details={"name": table.name, "namespace": table.namespace},
        correlation_id=correlation_id,
    )
    return table


def get_table(session: Session, table_id: str, *, include_deleted: bool = False) -> DataLakeTable:
    """Return a live table by id.

    Raises
    ------
    NotFound
        When there is no such table, or it is soft-deleted (unless ``include_deleted``).
    """
    table = SqlCatalog(session).table(table_id)
    if table is None or (table.deleted_at is not None and not include_deleted):
        raise NotFound(f"table {table_id} not found")
    return table


@dataclass(frozen=True)
class TableView:
    """What ``GET /tables/{id}`` answers: the table's columns (``row``, by attribute),
    its current schema and its Iceberg reference (None when Iceberg is off)."""

    row: Any
    schema: Schema
    iceberg: dict[str, Any] | None


def get_table_view(session: Session, table_id: str) -> TableView:
    """A live table, its current schema and Iceberg reference, read in one statement.

    Raises
    ------
    NotFound
        When there is no such table, or it is soft-deleted.
    """
    joined = iceberg_refs.joinable_catalog()
    row = SqlCatalog(session).table_view(table_id, iceberg_catalog=joined)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"table {table_id} not found")
    schema = Schema.from_json(row.schema_doc) if row.schema_doc else Schema()
    iceberg = iceberg_refs.reference_of(
        session,
        row.namespace,
        row.name,
        joined=(row.metadata_location,) if joined is not None else None,
    )
    return TableView(row=row, schema=schema, iceberg=iceberg)


def list_tables(
    session: Session, *, limit: int = 100, offset: int = 0, namespace: str | None = None
) -> tuple[list[DataLakeTable], int]:
    """Live tables, newest first, and their total count."""
    return SqlCatalog(session).live_tables_page(namespace=namespace, limit=limit, offset=offset)


def live_tables(session: Session, namespace: str | None = None) -> list[DataLakeTable]:
    """Every live table (of one namespace), in namespace and name order."""
    return SqlCatalog(session).live_tables_by_name(namespace)


def current_schema(session: Session, table: DataLakeTable) -> Schema:
    """The table's current schema (empty when it has none yet)."""
    row = SqlCatalog(session).schema_at(table.id, table.current_schema_version)
    return Schema.from_json(row.schema) if row else Schema()


def update_table(
    session: Session,
    table_id: str,
    changes: dict[str, Any],
    *,
    actor: str = "system",
    correlation_id: str | None = None,
) -> DataLakeTable:
    """Update a table's configuration (description, partitioning, policy, compatibility, format).

    Changing the partition spec applies to files written afterwards; committed files
    keep their layout and record their own partition values. ``actor`` and
    ``correlation_id`` go on the ``table.update`` audit event, with ``changes``.
    """
    table = get_table(session, table_id)
    if "description" in changes:
        table.description = changes["description"]
    if "schema_policy" in changes and changes["schema_policy"] is not None:
        table.schema_policy = validate_policy(changes["schema_policy"])
    if "compatibility" in changes and changes["compatibility"] is not None:
        table.compatibility = validate_mode(changes["compatibility"])
    if "partitioning" in changes and changes["partitioning"] is not None:
        spec = [pf.model_dump() for pf in parse_partitioning(changes["partitioning"])]
        _check_partition_columns(current_schema(session, table), spec)
        table.partitioning = spec
    if "format" in changes and changes["format"] is not None:
        table.format = validate_format({**table.format, **changes["format"]})
    if "max_rejected_ratio" in changes:  # null switches the quality gate off
        table.max_rejected_ratio = validate_ratio(changes["max_rejected_ratio"])
    table.version += 1
    SqlCatalog(session).flush()
    audit.record(
        session,
        actor=actor,
        action="table.update",
        entity_type="table",
        entity_id=table.id,
        details={"changes": changes},
        correlation_id=correlation_id,
    )
    return table


def delete_table(
    session: Session, table_id: str, *, actor: str = "system", correlation_id: str | None = None
) -> DataLakeTable:
    """Soft-delete: the data stays, the table leaves lists and refuses ingestion.

    Its data sources are disabled in the same transaction, so later uploads under them
    start nothing (instead of failing on the deleted table until the trigger's
    dead-letter queue takes them). ``actor`` and ``correlation_id`` go on the
    ``table.delete`` audit event.
    """
    catalog: Catalog = SqlCatalog(session)
    table = get_table(session, table_id)
    table.deleted_at = utcnow()
    table.live_name = None
    table.version += 1
    catalog.disable_sources_of(table.id)
    catalog.flush()
    audit.record(
        session,
        actor=actor,
        action="table.delete",
        entity_type="table",
        entity_id=table.id,
        correlation_id=correlation_id,
    )
    return table


@dataclass(frozen=True)
class FileListing:
    """One page of a table's files in one snapshot (see :mod:`datalake.catalog.snapshots`).

    ``total`` counts the snapshot's files; ``next`` is the cursor of the following page
    (None on the last one); ``expires_at`` is when the snapshot stops being served.
    """

    items: list[DataFile]
    total: int
    snapshot: snapshots.Snapshot
    next: str | None
    expires_at: datetime | None

    @property
    def token(self) -> str:
        """The snapshot's token, for ``snapshot=``."""
        return self.snapshot.token()


def list_files(
    session: Session,
    table_id: str,
    *,
    limit: int = 1000,
    offset: int = 0,
    snapshot: str | None = None,
    cursor: str | None = None,
) -> FileListing:
    """A page of the table's committed files, all of one snapshot, in ``key`` order.

    Without ``snapshot`` or ``cursor`` the page is of the table's current state, and the
    answer names that snapshot; passing it (or the answer's ``next`` cursor) back lists
    exactly the files committed in that state, even after compaction replaced some of
    them. Pages are cut by key after the cursor (keyset), then ``offset`` more are skipped.

    Raises
    ------
    NotFound
        When there is no such table.
    InvalidInput
        For a malformed token, or a cursor of another snapshot than ``snapshot``.
    SnapshotExpired
        When the snapshot is older than ``replaced_file_retention_seconds`` or files of
        it have been deleted: list again.
    """
    get_table(session, table_id, include_deleted=True)
    after: tuple[str, str] | None = None
    named: str | snapshots.Snapshot | None = snapshot
    if cursor is not None:
        from_cursor, after = snapshots.parse_cursor(table_id, cursor)
        if snapshot is not None and snapshots.parse_token(table_id, snapshot) != from_cursor:
            raise InvalidInput("cursor belongs to another snapshot than snapshot=")
        named = from_cursor
    retention = get_settings().replaced_file_retention_seconds
    snap = snapshots.resolve(session, table_id, named, retention_seconds=retention)
    # One row past the page says whether another page follows.
    rows, total = SqlCatalog(session).snapshot_files(
        table_id, snap.seq, after=after, offset=offset, limit=limit + 1
    )
    snapshots.check_intact(session, snap)
    items = rows[:limit]
    more = len(rows) > limit
    return FileListing(
        items=items,
        total=int(total),
        snapshot=snap,
        next=snapshots.encode_cursor(snap, items[-1].key, items[-1].id) if more else None,
        expires_at=snap.expires_at(retention),
    )


def committed_files(
    session: Session, table_id: str, *, limit: int = 1000, offset: int = 0
) -> tuple[list[DataFile], int]:
    """The committed data files of a table now (one page) and their total.

    :func:`list_files` gives the snapshot and cursor to page on consistently.
    """
    listing = list_files(session, table_id, limit=limit, offset=offset)
    return listing.items, listing.total
