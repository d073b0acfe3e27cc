"""Schema versions of a table: create, list, compare, apply (roll back), record.

A version is a row of ``datalake_schemas``; the table row points at its current one
(``current_schema_version``) and keeps ``last_column_id``, the high-water mark of field
ids (ids of dropped columns are never handed out again). Every new version -- proposed
through the API, evolved by an ingestion job, or an older version applied again -- goes
through :func:`record_version`, which bumps the table row optimistically
(``UPDATE ... WHERE version = :expected``) and writes the version's SchemaChange rows.

Rules (see ``docs/schema-evolution.md`` and ``docs/schema-api.md``):

- a proposed schema gets its field ids from :func:`datalake.domain.compat.assign_ids`
  and is checked against the table's history in its compatibility mode
  (:func:`datalake.domain.compat.ensure_compatible`); a violation refuses it (409);
- a request that would not change the current schema creates no version: the current
  one is returned with ``created = False`` (HTTP 200 instead of 201);
- applying an existing version makes its schema current as a **new** version (source
  ``rollback`` when the applied version is older than the one the current schema came
  from, ``apply`` otherwise), checked against the mode like any other change;
- the mode protects data: a version no data of the table was written with (and no
  running job writes with) is not held against a change for old data it cannot read;
- a version an ingestion job settled at Plan belongs to that job until data depends on
  it: when the job fails or is cancelled it is retired (:func:`retire_unsettled`), so a
  failed job leaves no schema behind.

Nothing here imports pyarrow: the API function uses this module. The API's forms of
these rows are the API's own (``datalake_api.presenters``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datalake.catalog.models import DataLakeSchema, DataLakeTable, SchemaChange
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.domain.compat import (
    Change,
    ChangeType,
    assign_ids,
    compare,
    compatibility,
    ensure_compatible,
    validate_mode,
)
from datalake.domain.evolution import rollback_changes
from datalake.domain.schema import Schema
from datalake.domain.vocabulary import JobStatus
from datalake.errors import CommitConflict, Conflict, IncompatibleSchema, InvalidInput, NotFound
from datalake.ports import Catalog
from datalake.services import audit
from datalake.services.tables import get_table

__all__ = [
    "SchemaComparison",
    "SchemaResult",
    "apply_version",
    "changes_by_version",
    "compare_schemas",
    "create_version",
    "current_version",
    "get_version",
    "history",
    "list_versions",
    "plan_on",
    "record_version",
    "retire_unsettled",
    "schema_at",
]


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

    Parameters
    ----------
    session:
        The catalog session (the caller commits).
    table:
        The table, as loaded in this session.
    schema:
        The new schema, ids assigned.
    source:
        ``create``, ``api``, ``ingest``, ``apply`` or ``rollback``.
    description, actor, job_id:
        Recorded on the version row.
    changes:
        The SchemaChange rows to record; default ``compare(current, schema)``.

    Returns
    -------
    DataLakeSchema
        The new version row.

    Raises
    ------
    CommitConflict
        When the table row changed since it was loaded.
    """
    catalog: Catalog = SqlCatalog(session)
    old_version = table.current_schema_version
    old = schema_at(session, table.id, old_version)
    new_version = catalog.last_schema_version(table.id) + 1
    if not catalog.compare_and_set(
        table,
        current_schema_version=new_version,
        last_column_id=max(table.last_column_id, schema.max_id),
    ):
        raise CommitConflict(f"table {table.id} changed concurrently")
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
    return catalog.add_schema_version(row, changes if changes is not None else compare(old, schema))


#: The outcomes of a job that leave the schema version it settled describing no data.
_UNSETTLED = (JobStatus.FAILED, JobStatus.CANCELLED)


def retire_unsettled(session: Session, table_id: str) -> list[int]:
    """Take back the current schema versions that failed or cancelled jobs settled.

    Plan records a job's inferred or evolved schema before any batch runs (every worker
    reads that one version). When the job then fails or is cancelled, that version
    describes no data: left current, it would bind every later job of the table to a
    schema that nothing was written with (a column typed ``string`` because the first
    file was wrong stays ``string``). While the current version is one such job's and
    no data or live job depends on it (:meth:`Catalog.schema_version_in_use`: a file row
    of it, or a job running or succeeded on it), it is deleted with its changes and its
    parent becomes current again; repeated down the chain.

    Safe with concurrent jobs: a Plan holds a shared lock on the version row it plans on
    until its job row names the version (:func:`plan_on`), and this takes the row's
    exclusive lock before it looks at who uses it, so a job being planned on the version
    either keeps it (planned first) or finds it gone and plans again. Only a candidate's
    row is locked: Plans of a table whose current version is settled wait for nothing.
    Field ids the retired versions used stay spent (``last_column_id`` is unchanged).

    Parameters
    ----------
    session:
        The catalog session (the caller commits).
    table_id:
        The table, live or deleted.

    Returns
    -------
    list of int
        The versions retired, newest first (each also recorded as a ``schema.retire``
        audit event).

    Raises
    ------
    CommitConflict
        When the table row changed between its reading and the retirement.
    """
    catalog: Catalog = SqlCatalog(session)
    retired: list[int] = []
    while True:
        table = catalog.table_as_stored(table_id)
        version = table.current_schema_version if table is not None else None
        if table is None or version is None or not _unsettled(catalog, table.id, version):
            return retired
        row = catalog.lock_schema_version(table.id, version)
        table = catalog.table_as_stored(table_id)  # as it is now that the row is ours
        if row is None or table is None or table.current_schema_version != version:
            continue
        job_id, parent = row.job_id, row.parent_version
        if not _unsettled(catalog, table.id, version) or catalog.schema_version_in_use(
            table.id, version
        ):
            return retired
        if not catalog.compare_and_set(table, current_schema_version=parent):
            raise CommitConflict(f"table {table.id} changed concurrently")
        audit.record(
            session,
            actor="system",
            action="schema.retire",
            entity_type="schema",
            entity_id=row.id,
            details={"table_id": table.id, "version": version, "job_id": job_id,
                     "current_version": parent},
        )
        catalog.delete_schema_version(table.id, version)
        retired.append(version)


def _unsettled(catalog: Catalog, table_id: str, version: int) -> bool:
    """Whether the version was settled by a job that then failed or was cancelled."""
    row = catalog.schema_at(table_id, version)
    job = catalog.job(row.job_id) if row is not None and row.job_id else None
    return job is not None and job.status in _UNSETTLED


def plan_on(session: Session, table_id: str) -> int | None:
    """The table's current schema version, its row share-locked for a job's Plan until
    the job row names it (the caller's transaction), so that no failed job's clean-up
    retires it meanwhile (:func:`retire_unsettled`). Plans share the lock: concurrent
    Plans of a table do not wait for each other.

    Raises
    ------
    CommitConflict
        When the current version kept changing while it was being locked.
    """
    catalog: Catalog = SqlCatalog(session)
    for _ in range(3):
        table = catalog.table_as_stored(table_id)
        if table is None or table.current_schema_version is None:
            return None
        version = table.current_schema_version
        locked = catalog.lock_schema_version(table.id, version, shared=True)
        table = catalog.table_as_stored(table_id)  # retired or replaced before the lock?
        if locked is not None and table is not None and table.current_schema_version == version:
            return version
    raise CommitConflict(f"the schema of table {table_id} kept changing while it was planned on")


def schema_at(session: Session, table_id: str, version: int | None) -> Schema:
    """The table's schema at a version (empty for ``None`` or an unknown version)."""
    row = SqlCatalog(session).schema_at(table_id, version)
    return Schema.from_json(row.schema) if row else Schema()


# ----------------------------------------------------------------------------- reads


def get_version(session: Session, version_id: str) -> DataLakeSchema:
    """A schema version by its id (the uuid of its row).

    Raises
    ------
    NotFound
        When there is no such version.
    """
    row = SqlCatalog(session).schema_version(str(version_id)) if version_id else None
    if row is None:
        raise NotFound(f"schema version {version_id} not found")
    return row


def history(session: Session, table_id: str) -> list[DataLakeSchema]:
    """Every version of a table, oldest first (no table check)."""
    return SqlCatalog(session).schema_history(table_id)


def list_versions(
    session: Session, table_id: str, *, limit: int = 100, offset: int = 0
) -> tuple[list[DataLakeSchema], int]:
    """A live table's versions, oldest first, and their total count.

    Raises
    ------
    NotFound
        When the table does not exist or is deleted.
    """
    get_table(session, table_id)
    return SqlCatalog(session).schema_versions_page(table_id, limit=limit, offset=offset)


def current_version(session: Session, table_id: str) -> DataLakeSchema:
    """The current version row of a live table.

    Raises
    ------
    NotFound
        When the table does not exist, is deleted, or has no schema yet.
    """
    table = get_table(session, table_id)
    row = SqlCatalog(session).schema_at(table.id, table.current_schema_version)
    if row is None:
        raise NotFound(f"table {table_id} has no schema yet")
    return row


def changes_by_version(
    session: Session, table_id: str, versions: Sequence[int] | None = None
) -> dict[int, list[SchemaChange]]:
    """The SchemaChange rows of a table, grouped by version (all versions by default)."""
    return SqlCatalog(session).schema_changes(table_id, versions)


# ---------------------------------------------------------------------------- writes


@dataclass(frozen=True)
class SchemaResult:
    """The outcome of creating or applying a version.

    Attributes
    ----------
    version:
        The new version row, or the current one when nothing changed.
    created:
        Whether a new version was recorded.
    changes:
        The changes from the previous current schema (empty when nothing changed).
    """

    version: DataLakeSchema
    created: bool
    changes: list[Change] = field(default_factory=list)


def _current_row(session: Session, table: DataLakeTable) -> DataLakeSchema | None:
    return SqlCatalog(session).schema_at(table.id, table.current_schema_version)


def _check_mode(session: Session, table: DataLakeTable, new: Schema) -> None:
    """Refuse ``new`` when it breaks the table's mode against its history (409)."""
    catalog = SqlCatalog(session)
    if table.current_schema_version is not None:
        # Which versions hold data is read below; a Plan share-locks the version it plans
        # on until its job records it, so wait for such a Plan (else a breaking change
        # could pass while the job's data of the old version is being committed).
        catalog.lock_schema_version(table.id, table.current_schema_version)
    rows = history(session, table.id)
    current = [r for r in rows if r.version == table.current_schema_version]
    # The latest version is the current one; keep it last even if it were not.
    ordered = [r for r in rows if r.version != table.current_schema_version] + current
    ensure_compatible(
        table.compatibility,
        [Schema.from_json(r.schema) for r in ordered],
        new,
        versions=[r.version for r in ordered],
        written=catalog.schema_versions_written(table.id),
    )


def _check_partitioning(table: DataLakeTable, changes: Sequence[Change]) -> list[dict[str, Any]]:
    """Refuse dropping a partition source column; return the spec with renames applied."""
    spec = [dict(pf) for pf in (table.partitioning or [])]
    if not spec:
        return spec
    for change in changes:
        used = [pf for pf in spec if str(pf.get("column", "")).lower() == change.column.lower()]
        if not used:
            continue
        if change.type is ChangeType.DROP_COLUMN:
            raise Conflict(
                f"column {change.column!r} partitions the table and cannot be dropped; "
                "change the table's partitioning first",
                details=[
                    {
                        "change": change.to_json(table.compatibility),
                        "message": f"{change.column!r} is a partition source column",
                    }
                ],
            )
        if change.type is ChangeType.RENAME_COLUMN and change.to is not None:
            for pf in used:
                pf["column"] = change.to
    return spec


def _record(
    session: Session,
    table: DataLakeTable,
    new: Schema,
    changes: list[Change],
    *,
    source: str,
    description: str | None,
    actor: str,
) -> DataLakeSchema:
    spec = _check_partitioning(table, changes)
    row = record_version(
        session, table, new, source=source, description=description, actor=actor, changes=changes
    )
    if spec != list(table.partitioning or []):
        table.partitioning = spec
        table.version += 1
        SqlCatalog(session).flush()
    return row


def create_version(
    session: Session,
    table_id: str,
    proposed: Mapping[str, Any],
    *,
    description: str | None = None,
    actor: str = "system",
    correlation_id: str | None = None,
) -> SchemaResult:
    """Propose a new schema for a table (``POST /schema/versions``).

    Parameters
    ----------
    session:
        The catalog session (the caller commits).
    table_id:
        A live table.
    proposed:
        The raw JSON form ``{"fields": [{"name", "type", "nullable"?, "id"?, "doc"?}]}``.
        Ids are assigned relative to the current schema
        (:func:`datalake.domain.compat.assign_ids`): a field without an id keeps the id
        of the current column of that name, other fields get fresh ids.
    description, actor, correlation_id:
        Recorded on the version and its ``schema.create`` audit event.

    Returns
    -------
    SchemaResult
        The new version (``created``), or the current one when the proposal equals it.

    Raises
    ------
    NotFound
        When the table does not exist or is deleted.
    InvalidInput
        When the schema is malformed (HTTP 422).
    IncompatibleSchema
        When it breaks the table's compatibility mode (HTTP 409, with the violations).
    Conflict
        When it drops a partition column, or the table changed concurrently (409).
    """
    table = get_table(session, table_id)
    if not isinstance(proposed, Mapping):
        raise InvalidInput("schema must be an object with a 'fields' list")
    current_row = _current_row(session, table)
    current = Schema.from_json(current_row.schema) if current_row else Schema()
    new = assign_ids(current, proposed, table.last_column_id)
    if not len(new):
        raise InvalidInput("a schema needs at least one column")
    if current_row is not None and new == current:
        return SchemaResult(current_row, created=False)
    _check_mode(session, table, new)
    changes = compare(current, new)
    row = _record(session, table, new, changes, source="api", description=description, actor=actor)
    audit.record(
        session,
        actor=actor,
        action="schema.create",
        entity_type="schema",
        entity_id=row.id,
        details={
            "table_id": table.id,
            "version": row.version,
            "parent_version": row.parent_version,
            "changes": [c.to_json(table.compatibility) for c in changes],
        },
        correlation_id=correlation_id,
    )
    return SchemaResult(row, created=True, changes=changes)


def _origin(rows: Sequence[DataLakeSchema], current: DataLakeSchema) -> int:
    """The oldest version whose schema equals the current one (where it came from)."""
    schema = Schema.from_json(current.schema)
    for r in rows:
        if r.version <= current.version and Schema.from_json(r.schema) == schema:
            return r.version
    return current.version


def apply_version(
    session: Session,
    version_id: str,
    *,
    description: str | None = None,
    actor: str = "system",
    correlation_id: str | None = None,
) -> SchemaResult:
    """Make an existing version's schema current (``POST /schema/versions/{id}/apply``).

    The schema is recorded as a **new** version, with the target's own field ids (a
    column dropped since comes back with its original id, so the files that hold it read
    it again; ``last_column_id`` never goes down). Its SchemaChange rows are
    ``compare(current, target)`` (:func:`datalake.domain.evolution.rollback_changes`).
    Its source is ``rollback`` when the target is older than the version the current
    schema originates from, ``apply`` otherwise (e.g. re-applying a newer version after
    a rollback). It is checked against the table's compatibility mode like any new
    version: rolling a promotion back is a narrowing, refused under ``BACKWARD``.

    Parameters
    ----------
    session:
        The catalog session (the caller commits).
    version_id:
        The id of a version row of a live table.
    description, actor, correlation_id:
        Recorded on the version and its ``schema.rollback``/``schema.apply`` audit event.

    Returns
    -------
    SchemaResult
        The new version, or the current one (``created = False``) when the target's
        schema is the current schema already.

    Raises
    ------
    NotFound
        When the version or its table does not exist (or the table is deleted).
    IncompatibleSchema
        When the change breaks the table's compatibility mode (409, with violations).
    Conflict
        When it drops a partition column, or the table changed concurrently (409).
    """
    target = get_version(session, version_id)
    table = get_table(session, target.table_id)
    current_row = _current_row(session, table)
    new = Schema.from_json(target.schema)
    current = Schema.from_json(current_row.schema) if current_row else Schema()
    if current_row is not None and new == current:
        return SchemaResult(current_row, created=False)
    rows = history(session, table.id)
    origin = _origin(rows, current_row) if current_row is not None else 0
    source = "rollback" if target.version < origin else "apply"
    try:
        _check_mode(session, table, new)
    except IncompatibleSchema as e:
        raise IncompatibleSchema(
            f"{e.message}. To {source} anyway, an admin can set the table's compatibility "
            f"to NONE first (PUT /tables/{table.id}).",
            details=e.details,
        ) from e
    changes = rollback_changes(current, new)
    row = _record(
        session,
        table,
        new,
        changes,
        source=source,
        description=description or f"{source} to version {target.version}",
        actor=actor,
    )
    audit.record(
        session,
        actor=actor,
        action=f"schema.{source}",
        entity_type="schema",
        entity_id=row.id,
        details={
            "table_id": table.id,
            "version": row.version,
            "applied_version": target.version,
            "applied_version_id": target.id,
            "parent_version": row.parent_version,
            "changes": [c.to_json(table.compatibility) for c in changes],
        },
        correlation_id=correlation_id,
    )
    return SchemaResult(row, created=True, changes=changes)


# --------------------------------------------------------------------------- compare


def _explicit(raw: Mapping[str, Any]) -> bool:
    fields = raw.get("fields")
    return isinstance(fields, list) and all(
        isinstance(f, Mapping) and f.get("id") not in (None, 0, "") for f in fields
    )


def _relative(reference: Schema, raw: Mapping[str, Any]) -> Schema:
    """Ids for a raw schema compared with ``reference``: explicit ids kept, others by name.

    The same assignment as a proposed schema's, refusing no explicit id: a comparison
    is not a change of the table, so an id absent from ``reference`` is another column.
    """
    return assign_ids(reference, raw, 0, refuse_dropped=False)


def _resolve(session: Session, side: Any, what: str) -> tuple[Schema | None, Mapping[str, Any]]:
    """A stored version's schema (anchored), or the raw mapping to resolve later."""
    if isinstance(side, str):
        return Schema.from_json(get_version(session, side).schema), {}
    if isinstance(side, Mapping):
        if "fields" not in side and "schema" in side and isinstance(side["schema"], Mapping):
            side = side["schema"]  # a version object as returned by the API
        if _explicit(side):
            return Schema.from_json(dict(side)), {}
        return None, side
    raise InvalidInput(f"{what} must be a schema object or a schema version id")


@dataclass(frozen=True)
class SchemaComparison:
    """The outcome of comparing two schemas.

    Attributes
    ----------
    changes:
        What turns the old schema into the new one, in order.
    compatible:
        Whether the new schema is compatible with the old under ``BACKWARD``,
        ``FORWARD`` and ``FULL``.
    mode:
        The mode the changes' ``breaking`` flags are relative to.
    """

    changes: list[Change]
    compatible: dict[str, bool]
    mode: str


def compare_schemas(
    session: Session, old: Any, new: Any, *, mode: str | None = None
) -> SchemaComparison:
    """Compare two schemas (``POST /schema/compare``).

    Parameters
    ----------
    session:
        The catalog session (to look version ids up).
    old, new:
        Each a schema object ``{"fields": [...]}`` or the id of a stored version. Fields
        without ids are matched by name with the other side (a stored version, or a
        schema whose fields all carry ids); when neither side has ids, ``old`` is
        numbered by position and ``new`` matched to it by name.
    mode:
        The mode ``breaking`` is relative to (default ``BACKWARD``).

    Returns
    -------
    SchemaComparison
        The changes, the compatibility in each mode, and the mode.

    Raises
    ------
    InvalidInput
        For a malformed schema or an unknown mode (422).
    NotFound
        For an unknown version id (404).
    """
    mode = validate_mode(mode)
    a, raw_a = _resolve(session, old, "old")
    b, raw_b = _resolve(session, new, "new")
    if a is None and b is None:
        a = Schema.from_json(dict(raw_a))
    if a is None:
        assert b is not None
        a = _relative(b, raw_a)
    if b is None:
        b = _relative(a, raw_b)
    return SchemaComparison(changes=compare(a, b), compatible=compatibility(a, b), mode=mode)
