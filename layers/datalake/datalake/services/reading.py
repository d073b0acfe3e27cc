"""Read a table as one consistent Arrow table across its schema versions.

A table's committed files may have been written under different schema versions. Each
file is projected onto the table's current schema (or a chosen version) **by field id**,
as Apache Iceberg readers do (:func:`datalake.domain.evolution.read_plan`):

- a column whose id the file lacks (added since) reads as null;
- a renamed column is read from the file under its old name (same id);
- a promoted column is widened (``int`` -> ``long``, ``float`` -> ``double``, decimal
  precision);
- columns dropped since are not read;
- any other conversion (only possible after a version accepted under ``NONE``, e.g. a
  rollback of a promotion) is cast, and a value that does not fit raises
  :class:`~datalake.errors.SchemaMismatch` naming the file and column -- never a silent
  null or a truncated value.

Field ids come from the Parquet schema (``PARQUET:field_id``, written by the engine from
:class:`~datalake.domain.schema.SchemaField` ids). For a file without them the catalog's
record of the schema version it was written with maps its column names to ids.

This module imports pyarrow: keep it out of the API function's import path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datalake.catalog.db import session_scope
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.domain.evolution import read_plan
from datalake.domain.schema import Schema, SchemaField
from datalake.engine.arrow_schema import FIELD_ID_KEY, iceberg_type_of, to_arrow_field
from datalake.engine.store import ObjectStore
from datalake.errors import InvalidInput, NotFound, SchemaMismatch
from datalake.services.tables import get_table

__all__ = ["FileRef", "file_field_ids", "project", "read_table", "scan_files", "scan_table"]


@dataclass(frozen=True)
class FileRef:
    """A committed data file and the schema it was written with (from the catalog)."""

    bucket: str
    key: str
    schema_version: int | None
    written: Schema | None

    @property
    def uri(self) -> str:
        """The file's ``s3://`` URI."""
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class _Snapshot:
    schema: Schema
    files: list[FileRef]


def _snapshot(session: Session, table_id: str, version: int | None) -> _Snapshot:
    table = get_table(session, table_id, include_deleted=True)
    catalog = SqlCatalog(session)
    rows = {r.version: Schema.from_json(r.schema) for r in catalog.schema_history(table.id)}
    wanted = table.current_schema_version if version is None else version
    if wanted is None:
        schema = Schema()
    elif wanted not in rows:
        raise NotFound(f"table {table_id} has no schema version {wanted}")
    else:
        schema = rows[wanted]
    files = catalog.committed_files(table.id)
    refs = [
        FileRef(f.bucket, f.key, f.schema_version, rows.get(f.schema_version or -1))
        for f in files
    ]
    return _Snapshot(schema, refs)


def file_field_ids(
    arrow_schema: pa.Schema, written: Schema | None, current: Schema
) -> dict[int, str]:
    """Map field ids to the column names of one data file.

    Parameters
    ----------
    arrow_schema:
        The file's Arrow schema (from its Parquet footer).
    written:
        The schema version the catalog says the file was written with, if known.
    current:
        The schema being read; its names are the last resort.

    Returns
    -------
    dict
        ``{field_id: column name in the file}``: from the ``PARQUET:field_id`` metadata
        when the file carries it; columns without one are matched by name
        (case-insensitive) with ``written``, else with ``current``.
    """
    ids: dict[int, str] = {}
    unnamed: list[str] = []
    for f in arrow_schema:
        raw = (f.metadata or {}).get(FIELD_ID_KEY)
        if raw is None:
            unnamed.append(f.name)
            continue
        try:
            ids.setdefault(int(raw), f.name)
        except ValueError:
            unnamed.append(f.name)
    if not unnamed:
        return ids
    reference = written if written is not None and len(written) else current
    lowered = {n.lower(): n for n in unnamed}
    for fld in reference.fields:
        name = lowered.get(fld.name.lower())
        if name is not None and fld.id not in ids:
            ids[fld.id] = name
    return ids


def _cast(column: pa.ChunkedArray | pa.Array, target: pa.DataType, where: str) -> pa.Array:
    if column.type == target:
        return column
    try:
        out = pc.cast(column, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise SchemaMismatch(
            f"{where} cannot be read as {target}: {str(e).splitlines()[0]}",
            details={"column": where, "target": str(target)},
        ) from e
    if pa.types.is_floating(column.type) and pa.types.is_floating(target):
        overflow = pc.and_(pc.is_finite(column), pc.invert(pc.is_finite(out)))
        if pc.any(overflow).as_py():
            raise SchemaMismatch(
                f"{where} holds values out of the range of {target}",
                details={"column": where, "target": str(target)},
            )
    return out


def project(
    data: pa.Table,
    file_ids: dict[int, str],
    schema: Schema,
    *,
    uri: str = "",
) -> pa.Table:
    """Project one file's rows onto ``schema`` by field id.

    Parameters
    ----------
    data:
        The file's rows (at least the columns ``file_ids`` names that ``schema`` needs).
    file_ids:
        ``{field_id: column name in data}`` (see :func:`file_field_ids`).
    schema:
        The target schema; the result has exactly its columns, in order, with its Arrow
        types and ``PARQUET:field_id`` metadata.
    uri:
        The file, for error messages.

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    SchemaMismatch
        When a value does not fit its column's type (an unsafe cast).
    """
    written = Schema(
        fields=tuple(
            SchemaField(id=fid, name=name, type=iceberg_type_of(data.schema.field(name).type))
            for fid, name in file_ids.items()
            if name in data.column_names
        )
    )
    arrays: list[pa.ChunkedArray | pa.Array] = []
    fields = [to_arrow_field(f) for f in schema.fields]
    for col, arrow_field in zip(read_plan(written, schema), fields, strict=True):
        if col.action == "null" or col.source is None:
            arrays.append(pa.nulls(data.num_rows, arrow_field.type))
            continue
        where = f"{uri}: column {col.source!r} ({col.source_type}) for {col.name!r}"
        arrays.append(_cast(data.column(col.source), arrow_field.type, where))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _select(schema: Schema, columns: Sequence[str] | None) -> Schema:
    if columns is None:
        return schema
    picked = []
    for name in columns:
        f = schema.find(name)
        if f is None:
            raise InvalidInput(f"unknown column {name!r}; the table has {schema.names}")
        picked.append(f)
    try:
        return Schema(fields=tuple(picked))
    except ValueError as e:
        raise InvalidInput(f"columns must be distinct: {list(columns)}") from e


def _resolve_args(target: Session | str, table_id: str | None) -> tuple[Session | None, str]:
    if isinstance(target, Session):
        if table_id is None:
            raise InvalidInput("read_table(session, table_id): table_id is required")
        return target, table_id
    return None, str(target)


def _take_snapshot(target: Session | str, table_id: str | None, version: int | None) -> _Snapshot:
    session, tid = _resolve_args(target, table_id)
    if session is not None:
        return _snapshot(session, tid, version)
    with session_scope() as s:
        return _snapshot(s, tid, version)


def _scan(
    snap: _Snapshot,
    store: ObjectStore,
    columns: Sequence[str] | None,
    filter: pc.Expression | None,
) -> Iterator[pa.Table]:
    wanted = _select(snap.schema, columns)
    # With a filter, project every column first: it may refer to columns not selected.
    reading = snap.schema if filter is not None else wanted
    for ref in snap.files:
        f = store.open_input(ref.bucket, ref.key)
        try:
            pf = pq.ParquetFile(f)
            ids = file_field_ids(pf.schema_arrow, ref.written, snap.schema)
            needed = sorted({ids[fld.id] for fld in reading.fields if fld.id in ids})
            data = pf.read(columns=needed)
        except (pa.ArrowInvalid, OSError) as e:
            raise SchemaMismatch(f"{ref.uri} is not a readable Parquet file: {e}") from e
        finally:
            f.close()
        part = project(data, ids, reading, uri=ref.uri)
        if filter is not None:
            part = part.filter(filter).select(wanted.names)
        yield part


def scan_files(
    schema: Schema,
    files: Sequence[FileRef],
    *,
    store: ObjectStore,
    columns: Sequence[str] | None = None,
    filter: pc.Expression | None = None,
) -> Iterator[pa.Table]:
    """Yield ``files`` one by one, each projected onto ``schema`` by field id.

    For a reader that took the table's schema and file list elsewhere (``datalake query``
    takes them from the API, not the catalog); otherwise as :func:`scan_table`. A file is
    opened only when the generator reaches it.

    Parameters
    ----------
    schema:
        The schema to project onto.
    files:
        The files to read, each with the schema it was written with when known.
    store, columns, filter:
        As for :func:`read_table`.
    """
    yield from _scan(_Snapshot(schema, list(files)), store, columns, filter)


def scan_table(
    target: Session | str,
    table_id: str | None = None,
    *,
    store: ObjectStore,
    columns: Sequence[str] | None = None,
    filter: pc.Expression | None = None,
    schema_version: int | None = None,
) -> Iterator[pa.Table]:
    """Yield the table's committed files one by one, each projected (see :func:`read_table`).

    The catalog is read once, when the generator starts; memory stays bounded by the
    largest file rather than the table.
    """
    snap = _take_snapshot(target, table_id, schema_version)
    yield from _scan(snap, store, columns, filter)


def read_table(
    target: Session | str,
    table_id: str | None = None,
    *,
    store: ObjectStore,
    columns: Sequence[str] | None = None,
    filter: pc.Expression | None = None,
    schema_version: int | None = None,
) -> pa.Table:
    """Read a table's committed rows as one Arrow table in its current schema.

    Parameters
    ----------
    target:
        A table id, or a catalog session (then ``table_id`` is the second argument).
    table_id:
        The table, when ``target`` is a session.
    store:
        Where the files are (``datalake.aws.s3.S3ObjectStore`` for the lake on S3).
    columns:
        Current column names to return (case-insensitive), in this order; default all.
    filter:
        A ``pyarrow.compute`` expression over current column names, applied to each
        file after projection (e.g. ``pc.field("id") > 10``).
    schema_version:
        Project onto this version's schema instead of the current one.

    Returns
    -------
    pyarrow.Table
        The rows of every committed file, columns in schema order (each carrying
        ``PARQUET:field_id``): nulls for columns a file predates, promoted types widened,
        renamed columns followed by id. Row order: files in key order, rows in file order.

    Raises
    ------
    NotFound
        When the table or version does not exist.
    InvalidInput
        For an unknown column.
    SchemaMismatch
        When a file holds a value the schema's type cannot hold (after a narrowing
        accepted under compatibility ``NONE``), or a file is not readable Parquet.
    """
    snap = _take_snapshot(target, table_id, schema_version)
    parts = list(_scan(snap, store, columns, filter))
    arrow_schema = pa.schema([to_arrow_field(f) for f in _select(snap.schema, columns).fields])
    if not parts:
        return arrow_schema.empty_table()
    return pa.concat_tables(parts)
