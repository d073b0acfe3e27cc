"""``datalake query``: DuckDB over the committed files of the tables a query names.

Only files listed by ``GET /tables/{id}/files`` are read (one snapshot each), so a query
sees whole jobs only. Each table is handed to DuckDB as an Arrow dataset whose scans run
:func:`datalake.services.reading.scan_files`: every file is projected onto the table's
schema **by field id**, as Iceberg readers and the services read it (a dropped column is
gone, a column re-added under an old name is null in files written before), and DuckDB
pushes its projection and filters into the scan, so:

- only the columns the query uses are read from each file (ranged GETs, no download);
- a file whose partition values contradict the query's filter is never opened (the
  catalog's partition values are the guarantee: identity, year, month, day, hour);
- files are opened as DuckDB pulls rows, a few at a time once it keeps pulling (a
  ``LIMIT`` stops early).

Results come back as Arrow, so time zones are converted by pyarrow (zoneinfo), not by
DuckDB's Python conversion, which needs ``pytz`` for ``TIMESTAMPTZ`` values.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datalake.cli.client import ApiClient, CliError, Profile

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    from sqlalchemy.orm import Session

    from datalake.domain.schema import Schema
    from datalake.engine.store import ObjectStore
    from datalake.services.reading import FileRef

API = "/api/v1"

#: ``namespace.name`` in SQL, not inside quotes (a rough cut; ``--table`` is the exact way).
_DOTTED = re.compile(r"(?<![\w.'\"])([A-Za-z_]\w*)\.([A-Za-z_]\w*)(?![\w.(])")


def named_tables(sql: str) -> list[str]:
    """The ``NAMESPACE.NAME`` words of ``sql``, in order, without repeats."""
    seen: list[str] = []
    for ns, name in _DOTTED.findall(re.sub(r"'[^']*'", "''", sql)):
        ref = f"{ns}.{name}"
        if ref not in seen:
            seen.append(ref)
    return seen


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as e:
        raise CliError(
            "datalake query needs DuckDB: pip install duckdb (it is a dev dependency)"
        ) from e
    return duckdb


# ------------------------------------------------------------------ what the API says


def schema_history(api: ApiClient, table_id: str) -> dict[int, Schema]:
    """``{version: schema}`` of the table, from ``GET /schema/versions/table/{id}``."""
    from datalake.domain.schema import Schema

    out: dict[int, Schema] = {}
    offset = 0
    while True:
        page = api.get(f"{API}/schema/versions/table/{table_id}", limit=100, offset=offset)
        for v in page["items"]:
            out[int(v["version"])] = Schema.from_json(v["schema"])
        offset += len(page["items"])
        if not page["items"] or offset >= int(page.get("total") or 0):
            return out


# ------------------------------------------------------------------ time travel


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 timestamp (a date alone is its midnight); without a zone it is UTC.

    Raises
    ------
    CliError
        When ``text`` is not one.
    """
    try:
        at = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise CliError(f"--as-of wants an ISO 8601 timestamp, not {text!r}") from e
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def _bucket_key(uri: str) -> tuple[str, str]:
    bucket, key = uri.removeprefix("s3://").removeprefix("s3a://").split("/", 1)
    return bucket, key


def _read_json(store: ObjectStore, uri: str) -> Any:
    import json

    bucket, key = _bucket_key(uri)
    with store.open_input(bucket, key) as f:
        return json.loads(f.read())


def _read_avro(store: ObjectStore, uri: str) -> list[dict[str, Any]]:
    import fastavro

    bucket, key = _bucket_key(uri)
    with store.open_input(bucket, key) as f:
        return list(fastavro.reader(f))  # type: ignore[arg-type]


def files_as_of(
    ref: str, table: dict[str, Any], at: dt.datetime, store: ObjectStore
) -> tuple[Schema, list[FileRef]]:
    """The schema and data files of the table's Iceberg snapshot current at ``at``.

    The catalog lists only the table's present (or a recent listing's) files; its history
    is the Iceberg metadata every Commit publishes, read here as any Iceberg reader
    would: the snapshot log's last entry at or before ``at``, that snapshot's schema (by
    field id) and its manifests' live entries.

    Raises
    ------
    CliError
        When the table is not published to Iceberg, has no snapshot that old, or the
        metadata or files of that snapshot are gone (expired).
    """
    from datalake.domain.schema import Schema
    from datalake.errors import DatalakeError
    from datalake.services.reading import FileRef

    location = (table.get("iceberg") or {}).get("metadata_location")
    if not location:
        raise CliError(f"table {ref} is not published to Iceberg, so it has no history for "
                       "--as-of (is Iceberg publishing turned off?)")
    try:
        meta = _read_json(store, location)
        ms = at.timestamp() * 1000
        log = meta.get("snapshot-log") or [
            {"snapshot-id": s["snapshot-id"], "timestamp-ms": s["timestamp-ms"]}
            for s in meta.get("snapshots") or []
        ]
        before = [e for e in log if e["timestamp-ms"] <= ms]
        if not before:
            first = min((e["timestamp-ms"] for e in log), default=None)
            since = (f"; its oldest is {dt.datetime.fromtimestamp(first / 1000, dt.UTC)}"
                     if first is not None else "")
            raise CliError(f"table {ref} has no snapshot at or before {at.isoformat()}{since}")
        wanted = max(before, key=lambda e: e["timestamp-ms"])["snapshot-id"]
        snap = next((s for s in meta.get("snapshots") or [] if s["snapshot-id"] == wanted), None)
        if snap is None:
            raise CliError(f"table {ref}: the snapshot current at {at.isoformat()} has expired")
        schema_id = snap.get("schema-id", meta.get("current-schema-id"))
        raw = next(s for s in meta["schemas"] if s["schema-id"] == schema_id)
        schema = Schema.from_json({"fields": [
            {"id": f["id"], "name": f["name"], "type": f["type"],
             "nullable": not f.get("required", False)}
            for f in raw["fields"]
        ]})
        files = []
        for manifest in _read_avro(store, snap["manifest-list"]):
            if manifest.get("content", 0) != 0:
                continue  # delete files: never written by this lake
            for entry in _read_avro(store, manifest["manifest_path"]):
                if entry["status"] == 2:  # DELETED
                    continue
                bucket, key = _bucket_key(entry["data_file"]["file_path"])
                files.append(FileRef(bucket, key, None, None))
    except CliError:
        raise
    except (DatalakeError, OSError, KeyError, ValueError, StopIteration) as e:
        raise CliError(f"cannot read table {ref} as of {at.isoformat()} from its Iceberg "
                       f"metadata: {type(e).__name__}: {' '.join(str(e).split())}") from e
    return schema, sorted(files, key=lambda f: f.key)


@dataclass(frozen=True)
class ListedFile:
    """One file a scan may read, with what the listing says of it."""

    ref: FileRef
    #: Its record count, when listed (a query of partition columns only opens nothing).
    rows: int | None = None
    #: Its values of the table's partition columns (path names), as the listing has them.
    partition: dict[str, Any] = field(default_factory=dict)
    #: What each of its rows satisfies (:func:`partition_guarantee`), for pruning.
    guarantee: pc.Expression | None = None


# ------------------------------------------------------------------ partition pruning


def _period(kind: str, text: str) -> tuple[dt.datetime, dt.datetime] | None:
    """The [start, end) of a year/month/day/hour partition value (Iceberg's strings)."""
    try:
        if kind == "year":
            start = dt.datetime(int(text), 1, 1)
            return start, start.replace(year=start.year + 1)
        if kind == "month":
            y, m = (int(p) for p in text.split("-"))
            start = dt.datetime(y, m, 1)
            return start, dt.datetime(y + m // 12, m % 12 + 1, 1)
        if kind == "day":
            start = dt.datetime.fromisoformat(text)
            return start, start + dt.timedelta(days=1)
        if kind == "hour":
            day, hour = text.rsplit("-", 1)
            start = dt.datetime.fromisoformat(day) + dt.timedelta(hours=int(hour))
            return start, start + dt.timedelta(hours=1)
    except (ValueError, OverflowError):
        return None
    return None


def partition_columns(partitioning: Sequence[dict[str, Any]], schema: Schema) -> list[str]:
    """The partition fields shown as columns: those whose path name is no column's name
    (an identity field's is its column's)."""
    from datalake.domain.partitioning import parse_partitioning
    from datalake.errors import InvalidInput

    try:
        fields = parse_partitioning(list(partitioning))
    except InvalidInput:
        return []
    names = {n.lower() for n in schema.names}
    return [pf.path_name for pf in fields if pf.path_name.lower() not in names]


def partition_guarantee(
    partitioning: Sequence[dict[str, Any]],
    values: dict[str, Any],
    schema: Schema,
    written: Schema | None,
    exposed: Sequence[str] = (),
) -> pc.Expression | None:
    """What every row of a file satisfies, from its partition values; None if nothing known.

    The ``exposed`` partition columns equal the file's values. A field's source column
    counts only when the file was written with the same column (same field id) the current
    schema has under that name: a column dropped and re-added reads as null in older
    files, whatever their partition values say.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from datalake.domain.partitioning import parse_partitioning
    from datalake.engine.arrow_schema import to_arrow_field
    from datalake.errors import InvalidInput

    known: list[pc.Expression] = []
    for name in exposed:
        value = values.get(name)
        known.append(pc.field(name).is_null() if value is None
                     else pc.field(name) == pa.scalar(str(value), pa.string()))
    try:
        fields = parse_partitioning(list(partitioning)) if written is not None else []
    except InvalidInput:
        fields = []
    for pf in fields:
        assert written is not None
        col, old = schema.find(pf.column), written.find(pf.column)
        if col is None or old is None or col.id != old.id or pf.path_name not in values:
            continue
        kind, value = pf.parsed.kind, values[pf.path_name]
        ref, typ = pc.field(col.name), to_arrow_field(col).type
        if value is None:
            known.append(ref.is_null())
            continue
        try:
            # Not floats: a NaN value equals nothing, so it would guarantee the impossible.
            if kind == "identity" and not (pa.types.is_binary(typ) or pa.types.is_floating(typ)):
                scalar = pa.scalar(str(value)).cast(typ)
                known.append(ref == scalar)
            elif kind in ("year", "month", "day", "hour") and (
                pa.types.is_timestamp(typ) or pa.types.is_date(typ)
            ):
                bounds = _period(kind, str(value))
                if bounds is None:
                    continue
                lo, hi = bounds
                if pa.types.is_timestamp(typ) and typ.tz is not None:
                    lo, hi = lo.replace(tzinfo=dt.UTC), hi.replace(tzinfo=dt.UTC)
                low: Any = lo.date() if pa.types.is_date(typ) else lo
                high: Any = hi.date() if pa.types.is_date(typ) else hi
                known.append((ref >= pa.scalar(low, typ)) & (ref < pa.scalar(high, typ)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
            continue
    if not known:
        return None
    out = known[0]
    for e in known[1:]:
        out = out & e
    return out


def prune(
    files: Sequence[ListedFile], arrow_schema: pa.Schema, filter: pc.Expression | None
) -> list[ListedFile]:
    """The files whose guarantee does not contradict ``filter`` (pyarrow's simplification,
    as for a partitioned dataset's fragments: conservative, nothing is opened)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if filter is None or not files:
        return list(files)
    always = pc.scalar(True)
    try:
        index = ds.FileSystemDataset.from_paths(
            [f"/{i}" for i in range(len(files))],
            schema=arrow_schema,
            format=ds.ParquetFileFormat(),
            filesystem=pa.fs.LocalFileSystem(),
            partitions=[f.guarantee if f.guarantee is not None else always for f in files],
        )
        kept = {int(fr.path.lstrip("/")) for fr in index.get_fragments(filter=filter)}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return list(files)
    return [f for i, f in enumerate(files) if i in kept]


# ------------------------------------------------------------------ the scan DuckDB runs


#: Files read at once by one scan (each is a few ranged GETs: latency, not bandwidth).
MAX_READS_IN_FLIGHT = 16


def _prefetched(
    items: Sequence[ListedFile], read: Callable[[ListedFile], pa.Table]
) -> Iterator[pa.Table]:
    """``read(item)`` of each item, in order, several at once. The window starts at one
    file and doubles with each file consumed, so a query that stops early (``LIMIT``)
    opens few files more than it uses."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    todo = iter(items)
    pending: deque[Future[pa.Table]] = deque()
    window = 1
    pool = ThreadPoolExecutor(max_workers=MAX_READS_IN_FLIGHT, thread_name_prefix="query")
    try:
        while True:
            while len(pending) < window and (item := next(todo, None)) is not None:
                pending.append(pool.submit(read, item))
            if not pending:
                return
            yield pending.popleft().result()
            window = min(window * 2, MAX_READS_IN_FLIGHT)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Stream:
    """What DuckDB takes from ``Dataset.scanner(...)``: it only calls ``to_reader()``."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.reader = reader

    def to_reader(self) -> pa.RecordBatchReader:
        """The batches, pulled by DuckDB one at a time in its own threads."""
        return self.reader


def table_scan(
    schema: Schema,
    files: Sequence[ListedFile],
    store: ObjectStore,
    failures: list[Exception],
    partition_columns: Sequence[str] = (),
) -> Any:
    """A ``pyarrow.dataset.Dataset`` DuckDB can scan: its ``scanner(columns, filter)`` (what
    DuckDB pushes down) prunes ``files`` and streams them through
    :func:`~datalake.services.reading.scan_files`.

    The columns are the schema's, then ``partition_columns`` (strings, each file's value
    from the listing, as Hive-partitioned reads showed them); a query of those alone opens
    no file.

    DuckDB recognises Arrow datasets by type, so this is an (empty) ``InMemoryDataset``
    whose ``scanner`` is replaced: the projection by field id happens in our code. An
    error while reading is appended to ``failures`` before DuckDB sees it.

    ``scanner`` answers a :class:`_Stream`, not a ``pyarrow.dataset.Scanner``: a Scanner
    over a Python generator reads ahead on its own threads (a ``LIMIT 1`` opened every
    file), and a thread of it still in the generator when the interpreter exits aborts it.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    from datalake.engine.arrow_schema import to_arrow_field
    from datalake.services.reading import scan_files

    arrow_schema = pa.schema(
        [to_arrow_field(f) for f in schema.fields]
        + [pa.field(n, pa.string()) for n in partition_columns]
    )
    in_files = set(schema.names)

    class _Scan(ds.InMemoryDataset):
        def scanner(self, *args: Any, **kwargs: Any) -> Any:
            cols = kwargs.get("columns")
            flt = kwargs.get("filter")
            names = list(cols) if cols is not None else arrow_schema.names
            out = pa.schema([arrow_schema.field(n) for n in names])
            data = [n for n in names if n in in_files]
            constant = [n for n in names if n not in in_files]
            picked = prune(files, arrow_schema, flt)

            def read(item: ListedFile) -> pa.Table:
                if data or item.rows is None:
                    wanted = data or schema.names[:1]
                    part = next(iter(scan_files(schema, [item.ref], store=store,
                                                columns=wanted))).select(data)
                else:  # only partition columns: the listing's record count is enough
                    part = pa.table({"_": pa.nulls(item.rows)}).select([])
                for n in constant:
                    value = item.partition.get(n)
                    part = part.append_column(pa.field(n, pa.string()), pa.array(
                        [None if value is None else str(value)] * part.num_rows, pa.string()))
                if flt is not None:
                    part = part.filter(flt)
                return part.select(names).cast(out)

            def batches() -> Iterator[pa.RecordBatch]:
                try:
                    for part in _prefetched(picked, read):
                        yield from part.to_batches()
                except Exception as e:
                    # DuckDB re-raises it as text with its traceback inside: keep the cause.
                    failures.append(e)
                    raise

            return _Stream(pa.RecordBatchReader.from_batches(out, batches()))

    return _Scan(arrow_schema.empty_table())


def _store(profile: Profile) -> ObjectStore:
    from datalake.aws.s3 import S3ObjectStore
    from datalake.cli.lookups import s3_client

    return S3ObjectStore(s3_client(profile))


def _file_refs(
    items: Sequence[dict[str, Any]], history: dict[int, Schema]
) -> list[FileRef]:
    from datalake.services.reading import FileRef

    refs = []
    for f in items:
        bucket, key = _bucket_key(str(f["path"]))
        version = f.get("schema_version")
        refs.append(FileRef(bucket, key, version, history.get(version or -1)))
    return refs


def _rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of an Arrow result (pyarrow converts zones; no pytz needed)."""
    table = result.read_all() if hasattr(result, "read_all") else result
    columns = [str(n) for n in table.column_names]
    values = [c.to_pylist() for c in table.columns]
    return columns, [list(r) for r in zip(*values, strict=True)]


def run_query(
    api: ApiClient,
    profile: Profile,
    sql: str,
    *,
    tables: list[str],
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """Run ``sql`` over the named tables; return ``{"columns", "rows", "tables"}``.

    Parameters
    ----------
    api, profile:
        Where the catalog's API and the lake's objects are.
    sql:
        The query; tables appear in it as ``NAMESPACE.NAME``.
    tables:
        Tables to expose; empty = every ``NAMESPACE.NAME`` of ``sql`` that is a table.
    as_of:
        Read each table as it was then (its Iceberg snapshot, :func:`files_as_of`).

    Returns
    -------
    dict
        ``columns``, ``rows``, and ``tables``: each table's id and its ``files`` (in the
        snapshot listed) and ``files_read`` (opened by the query).

    Raises
    ------
    CliError
        When DuckDB is missing, a table is unknown or has no schema, or the SQL fails
        (a file that does not fit the schema included).
    """
    from datalake.cli.lookups import TableNotFound, committed_files, resolve_table
    from datalake.domain.schema import Schema
    from datalake.errors import DatalakeError

    duckdb = _duckdb()
    explicit = bool(tables)
    refs = tables or named_tables(sql)
    if not refs:
        raise CliError("the query names no table: write NAMESPACE.NAME, or pass --table")
    resolved = []
    for ref in refs:
        try:
            resolved.append((ref, resolve_table(api, ref)))
        except TableNotFound:
            if explicit:
                raise
            # A dotted word that is not a table (alias.column): DuckDB will judge it.
    if not resolved:
        raise CliError(f"no table among {', '.join(refs)}")
    con = duckdb.connect()
    store = _CountingStore(_store(profile))
    failures: list[Exception] = []
    used = []
    for i, (ref, t) in enumerate(resolved):
        exposed: list[str] = []
        if as_of is not None:
            if "iceberg" not in t:
                t = dict(api.call("GET", f"{API}/tables/{t['id']}"))
            schema, refs_then = files_as_of(ref, t, as_of, store.store)
            files = [ListedFile(f) for f in refs_then]
        else:
            schema = Schema.from_json(t["schema"]) if t.get("schema") else Schema()
            exposed = partition_columns(t.get("partitioning") or [], schema)
            items = committed_files(api, t["id"])
            files = []
            for it, f in zip(items, _file_refs(items, schema_history(api, t["id"])),
                             strict=True):
                if it.get("size_bytes"):
                    store.sizes[(f.bucket, f.key)] = int(it["size_bytes"])
                values = it.get("partition") or {}
                files.append(ListedFile(
                    f, rows=it.get("record_count"), partition=values,
                    guarantee=partition_guarantee(t.get("partitioning") or [], values, schema,
                                                  f.written, exposed),
                ))
        if not len(schema):
            raise CliError(f"table {ref} has no committed data yet (it has no schema)")
        ns, name = t["namespace"], t["name"]
        view = f"__datalake_scan_{i}"
        con.register(view, table_scan(schema, files, store.of(t["id"]), failures, exposed))
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{ns}"')
        con.execute(f'CREATE VIEW "{ns}"."{name}" AS SELECT * FROM "{view}"')
        used.append({"table": f"{ns}.{name}", "id": t["id"], "files": len(files)})
    try:
        columns, rows = _rows(con.execute(sql).arrow())
    except duckdb.Error as e:
        cause: Exception = failures[0] if failures else e
        if isinstance(cause, DatalakeError):
            raise CliError(f"query failed: {cause.message}") from cause
        what = f"{type(cause).__name__}: " if failures else ""
        raise CliError(f"query failed: {what}{' '.join(str(cause).split())}") from cause
    finally:
        # Releases the scans now (their reader threads end here, not at interpreter exit).
        con.close()
    for u in used:
        u["files_read"] = store.opened.get(u["id"], 0)
    return {"columns": columns, "rows": rows, "tables": used}


class _CountingStore:
    """The lake's store, counting the files each table's scans open (``files_read``)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.opened: dict[str, int] = {}
        #: ``(bucket, key) -> size`` as the listing says: opening a file needs no HEAD then.
        self.sizes: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def of(self, table_id: str) -> ObjectStore:
        """The store as one table's scans use it: every ``open_input`` counted."""
        return _Counted(self, table_id)


class _Counted:
    def __init__(self, counts: _CountingStore, table_id: str) -> None:
        self.counts, self.table_id = counts, table_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.counts.store, name)

    def open_input(self, bucket: str, key: str, **kwargs: Any) -> Any:
        opened = self.counts.opened
        with self.counts.lock:  # the scan's reader threads
            opened[self.table_id] = opened.get(self.table_id, 0) + 1
        size = self.counts.sizes.get((bucket, key))
        if size is not None:
            kwargs.setdefault("size", size)
        return self.counts.store.open_input(bucket, key, **kwargs)


def to_duckdb(
    table_id: str,
    *,
    store: ObjectStore,
    connection: Any = None,
    name: str | None = None,
    session: Session | None = None,
    columns: Sequence[str] | None = None,
    filter: pc.Expression | None = None,
) -> Any:
    """A DuckDB relation over :func:`datalake.services.reading.read_table`, read from the
    catalog directly (DuckDB is a development dependency: the library never imports it).

    Parameters
    ----------
    table_id:
        The table.
    store:
        Where the files are.
    connection:
        A ``duckdb.DuckDBPyConnection``; default a new in-memory one.
    name:
        Also register the Arrow table as a view of that name on the connection.
    session, columns, filter:
        As for :func:`~datalake.services.reading.read_table`.

    Returns
    -------
    duckdb.DuckDBPyRelation

    Raises
    ------
    CliError
        When DuckDB is not installed.
    """
    from datalake.services.reading import read_table

    duckdb = _duckdb()
    data = (
        read_table(session, table_id, store=store, columns=columns, filter=filter)
        if session is not None
        else read_table(table_id, store=store, columns=columns, filter=filter)
    )
    con = connection if connection is not None else duckdb.connect()
    if name:
        con.register(name, data)
    return con.from_arrow(data)
