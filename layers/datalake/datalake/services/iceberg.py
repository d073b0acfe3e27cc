"""Publishing tables as Apache Iceberg (format version 2) tables, with pyiceberg.

Imported only by the Commit and optimize paths (and lazily by the API's Iceberg REST
routes): pyiceberg is a large library that the API's cold start must not pay for.

The catalog is the authority; Iceberg follows it, change by change
-------------------------------------------------------------------
Every change of a table's committed file set already has a number in our catalog, the
table's ``file_seq`` (``catalog/snapshots.py``): a job's Commit and a compaction's swap
each take the next one, in commit order, and stamp it on the files they add
(``committed_seq``) and retire (``replaced_seq``). Iceberg is brought up to date from
those numbers by :func:`publish_table`:

1. read the Iceberg table's current snapshot and its summary's ``datalake.file-seq``
   (``P``, the last change published);
2. for every change ``s`` in ``P+1 .. file_seq``: one Iceberg snapshot that adds the files
   committed at ``s`` and removes those replaced at ``s``, with ``datalake.file-seq = s``
   and, for a job's Commit, ``datalake.job-id``: an ``append`` for a job, a ``replace``
   for a compaction, an ``overwrite`` for a retry that rebuilds an older job's files;
3. each snapshot is an optimistic commit of the Iceberg catalog (pyiceberg's
   ``UPDATE ... WHERE metadata_location = :current``); on a conflict (another process
   published first) it starts again at 1, so nothing is appended twice.

Commit runs its catalog transaction first and then :func:`publish_table`. A crash (or
any failure) between the two leaves the job SUCCEEDED in our catalog and Iceberg one
change behind; the failure is raised, the state machine retries Commit, and the retry
(``commit_job`` is idempotent for a SUCCEEDED job) publishes it. Were the retries to
run out, the next publish of the table (the next job, compaction or the optimize
schedule) publishes it first, as its own snapshot with its own job id. Iceberg never
shows a file the catalog has not committed, never shows a job twice, and never lags
once a publish has succeeded.

Files leave the lake only after Iceberg has forgotten them: the sweep of replaced files
publishes first, expires Iceberg snapshots older than the retention period
(``replaced_file_retention_seconds``) and deletes only the files no remaining snapshot
lists (:func:`expire_snapshots`), then the metadata files nothing refers to any more
(:func:`delete_orphan_metadata`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from datalake.aws.clients import client
from datalake.catalog.db import get_engine, normalise_url, session_scope
from datalake.catalog.models import DataFile, DataLakeTable
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.config import Settings, get_settings
from datalake.domain import iceberg as mapping
from datalake.domain.layout import table_prefix
from datalake.domain.partitioning import PartitionField, parse_partitioning
from datalake.domain.schema import Schema
from datalake.engine.writer import decode_footer
from datalake.errors import CommitConflict, DatalakeError
from datalake.services.iceberg_refs import CATALOG_NAME

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.manifest import DataFile as IcebergDataFile
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema as IcebergSchema
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

#: Snapshot summary keys: the catalog change a snapshot publishes, and its job.
SUMMARY_SEQ = "datalake.file-seq"
SUMMARY_JOB = "datalake.job-id"
SUMMARY_CHANGE = "datalake.change"
#: Attempts of a publish when another process commits the same Iceberg table first.
PUBLISH_ATTEMPTS = 8
#: Table properties every published table gets.
TABLE_PROPERTIES = {
    "format-version": "2",
    # old metadata.json files go with the commits that supersede them
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    # pyiceberg retries its own commit conflicts; we retry the whole publish instead
    "commit.retry.num-retries": "0",
    "datalake.managed-by": "datalake",
}


class IcebergPublishError(DatalakeError):
    """The Iceberg table could not be brought up to date (retried by the caller)."""


# ------------------------------------------------------------------------ settings


def enabled(settings: Settings | None = None) -> bool:
    """Whether tables are published as Iceberg (``DATALAKE_ICEBERG_CATALOG`` not ``none``)."""
    return (settings or get_settings()).iceberg_catalog != "none"


def catalog_uri(settings: Settings | None = None) -> str:
    """The SQLAlchemy URL of the Iceberg SQL catalog: ``DATALAKE_ICEBERG_CATALOG_URI``,
    by default the project's own catalog database."""
    settings = settings or get_settings()
    return normalise_url(settings.iceberg_catalog_uri or settings.database_url)


def warehouse(settings: Settings | None = None) -> str:
    """Where tables live: the lake bucket."""
    settings = settings or get_settings()
    return f"s3://{settings.lake_bucket}"


def identifier(namespace: str, name: str) -> tuple[str, str]:
    """A table's Iceberg identifier: ``(<namespace>, <name>)``."""
    return (namespace, name)


def table_location(namespace: str, name: str, settings: Settings | None = None) -> str:
    """The Iceberg table's location: the table's folder in the lake (data files are
    already under it; metadata goes to ``<location>/metadata/``)."""
    return f"{warehouse(settings)}/{table_prefix(namespace, name)}"


# --------------------------------------------------------------------- file I/O


def _split(location: str) -> tuple[str, str]:
    parsed = urlparse(location)
    if parsed.scheme not in ("s3", "s3a", "s3n"):
        raise ValueError(f"not an S3 location: {location}")
    return parsed.netloc, parsed.path.lstrip("/")


def _file_io_base() -> type:
    from pyiceberg.io import FileIO

    return FileIO


class _BotoInput:
    """pyiceberg ``InputFile`` over boto3 (metadata files are small: read whole)."""

    def __init__(self, location: str, s3: Any) -> None:
        self.location = location
        self._s3 = s3
        self._size: int | None = None

    def __len__(self) -> int:
        if self._size is None:
            bucket, key = _split(self.location)
            self._size = int(self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        return self._size

    def exists(self) -> bool:
        try:
            len(self)
        except self._s3.exceptions.ClientError:
            return False
        return True

    def open(self, seekable: bool = True) -> io.BytesIO:
        bucket, key = _split(self.location)
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self._s3.exceptions.NoSuchKey as e:
            raise FileNotFoundError(self.location) from e
        return io.BytesIO(body)


class _BotoOutputStream(io.BytesIO):
    def __init__(self, location: str, s3: Any) -> None:
        super().__init__()
        self._location, self._s3, self._done = location, s3, False

    def close(self) -> None:
        if not self._done:
            self._done = True
            bucket, key = _split(self._location)
            self._s3.put_object(Bucket=bucket, Key=key, Body=self.getvalue())
        super().close()


class _BotoOutput:
    """pyiceberg ``OutputFile`` over boto3: buffered, stored on close."""

    def __init__(self, location: str, s3: Any) -> None:
        self.location = location
        self._s3 = s3

    def __len__(self) -> int:
        return len(_BotoInput(self.location, self._s3))

    def exists(self) -> bool:
        return _BotoInput(self.location, self._s3).exists()

    def to_input_file(self) -> _BotoInput:
        return _BotoInput(self.location, self._s3)

    def create(self, overwrite: bool = False) -> _BotoOutputStream:
        if not overwrite and self.exists():
            raise FileExistsError(self.location)
        return _BotoOutputStream(self.location, self._s3)


def _make_file_io_class() -> type:
    base = _file_io_base()

    class BotoFileIO(base):  # type: ignore[misc, valid-type]
        """pyiceberg's FileIO on the process's boto3 S3 client.

        Why not pyiceberg's own: its PyArrow and fsspec FileIOs bring their own S3
        clients (and s3fs would add ~30 MB to the layer); boto3 is in every Lambda
        already, honours ``AWS_ENDPOINT_URL`` (LocalStack) and is what moto mocks.
        """

        def new_input(self, location: str) -> Any:
            return _BotoInput(location, client("s3"))

        def new_output(self, location: str) -> Any:
            return _BotoOutput(location, client("s3"))

        def delete(self, location: Any) -> None:
            loc = location if isinstance(location, str) else location.location
            bucket, key = _split(loc)
            client("s3").delete_object(Bucket=bucket, Key=key)

    BotoFileIO.__module__ = __name__
    BotoFileIO.__qualname__ = "BotoFileIO"
    return BotoFileIO


def __getattr__(name: str) -> Any:
    # pyiceberg loads the FileIO by dotted name (``py-io-impl``); the class is built on
    # first use so that importing this module does not import pyiceberg.
    if name == "BotoFileIO":
        cls = _make_file_io_class()
        globals()["BotoFileIO"] = cls
        return cls
    raise AttributeError(name)


# ------------------------------------------------------------------------ catalogs


@lru_cache(maxsize=4)
def _catalog(kind: str, uri: str, wh: str, region: str) -> Catalog:
    props = {"warehouse": wh, "py-io-impl": f"{__name__}.BotoFileIO"}
    if kind == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        return GlueCatalog(CATALOG_NAME, client=client("glue"), **props)
    from pyiceberg.catalog import MetastoreCatalog
    from pyiceberg.catalog.sql import SqlCatalog

    class _SqlCatalogOnOurEngine(SqlCatalog):
        """pyiceberg's SqlCatalog on the process's SQLAlchemy engine of that database:
        the SQLite pragmas (WAL, busy timeout) and the Postgres pool are ours."""

        def __init__(self, name: str, **properties: str) -> None:
            MetastoreCatalog.__init__(self, name, **properties)
            self.engine = get_engine(uri)
            self._init_catalog()

    return _SqlCatalogOnOurEngine(CATALOG_NAME, uri=uri, **props)


def get_catalog(settings: Settings | None = None) -> Catalog:
    """The Iceberg catalog of this deployment (created once per process).

    ``DATALAKE_ICEBERG_CATALOG``: ``sql`` (default: the JDBC catalog's tables in
    ``DATALAKE_ICEBERG_CATALOG_URI``, by default the project's own database) or ``glue``
    (the AWS Glue Data Catalog of the account and region).
    """
    settings = settings or get_settings()
    region = client("s3").meta.region_name or "us-east-1"
    return _catalog(settings.iceberg_catalog, catalog_uri(settings), warehouse(settings), region)


def reset() -> None:
    """Forget cached catalogs (tests switch databases)."""
    _catalog.cache_clear()


# ------------------------------------------------------------------ descriptions


def to_iceberg_schema(schema: Schema, schema_id: int = 0) -> IcebergSchema:
    """Our schema as pyiceberg's: the same field ids, every column optional
    (:func:`datalake.domain.iceberg.published_required`)."""
    from pyiceberg.schema import Schema as ISchema
    from pyiceberg.types import NestedField

    fields = [
        NestedField(
            field_id=c.field_id,
            name=c.name,
            field_type=_primitive(c.type),
            required=c.required,
            doc=c.doc,
        )
        for c in mapping.published_required(mapping.iceberg_schema(schema))
    ]
    return ISchema(*fields, schema_id=schema_id)


def _primitive(type_string: str) -> Any:
    """pyiceberg's type object for an Iceberg type string (``long``, ``decimal(9, 2)``)."""
    from pyiceberg import types as t

    simple = {
        "boolean": t.BooleanType, "int": t.IntegerType, "long": t.LongType,
        "float": t.FloatType, "double": t.DoubleType, "date": t.DateType, "time": t.TimeType,
        "timestamp": t.TimestampType, "timestamptz": t.TimestamptzType,
        "string": t.StringType, "uuid": t.UUIDType, "binary": t.BinaryType,
    }
    if type_string in simple:
        return simple[type_string]()
    if m := re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", type_string):
        return t.DecimalType(int(m.group(1)), int(m.group(2)))
    if m := re.fullmatch(r"fixed\[(\d+)\]", type_string):
        return t.FixedType(int(m.group(1)))
    raise ValueError(f"no Iceberg type for {type_string!r}")


def to_partition_spec(table: DataLakeTable, schema: Schema, spec_id: int = 0) -> PartitionSpec:
    """The table's partitioning as an Iceberg spec (``range`` fields left out)."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import parse_transform

    published, _ = mapping.partition_spec(parse_partitioning(table.partitioning), schema)
    return PartitionSpec(
        *[
            PartitionField(
                source_id=p.source_id,
                field_id=p.field_id,
                transform=parse_transform(p.transform),
                name=p.name,
            )
            for p in published
        ],
        spec_id=spec_id,
    )


def _same_fields(a: IcebergSchema, b: IcebergSchema) -> bool:
    return [(f.field_id, f.name, str(f.field_type)) for f in a.fields] == [
        (f.field_id, f.name, str(f.field_type)) for f in b.fields
    ]


def _spec_key(spec: PartitionSpec) -> list[tuple[int, str, str]]:
    return [(f.source_id, f.name, str(f.transform)) for f in spec.fields]


@dataclass
class _TableState:
    """What a publish needs from our catalog about one table."""

    id: str
    namespace: str
    name: str
    file_seq: int
    swept_seq: int
    partitioning: list[Any]
    table: DataLakeTable
    schema: Schema
    schemas: dict[int, Schema] = field(default_factory=dict)


def _load_state(session: Session, table_id: str) -> _TableState:
    catalog = SqlCatalog(session)
    t = catalog.get(DataLakeTable, table_id)
    if t is None:
        raise IcebergPublishError(f"table {table_id} not found")
    rows = catalog.schema_history(table_id)
    schemas = {r.version: Schema.from_json(r.schema) for r in rows}
    current = mapping.widened(
        schemas.get(t.current_schema_version or -1, Schema()), list(schemas.values())
    )
    return _TableState(
        id=t.id,
        namespace=t.namespace,
        name=t.name,
        file_seq=int(t.file_seq or 0),
        swept_seq=int(t.swept_seq or 0),
        partitioning=list(t.partitioning or []),
        table=t,
        schema=current,
        schemas=schemas,
    )


def data_file(
    row: DataFile, state: _TableState, spec: PartitionSpec, *, with_metrics: bool = True
) -> IcebergDataFile:
    """A catalog file row described as an Iceberg data file of partition spec ``spec``.

    Metrics (record count, column sizes, value, null and NaN counts, lower and upper
    bounds, split offsets) come from the file's own Parquet footer as the writer kept
    it, through pyiceberg's ``data_file_statistics_from_parquet_metadata``, keyed by the
    field ids the file carries: no object is read. A file without a stored footer
    (written before migration 0006) is described by its record count and size only.
    """
    from pyiceberg.manifest import DataFile as IDataFile
    from pyiceberg.manifest import DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    schema = state.schemas.get(row.schema_version or -1, state.schema)
    partition = Record(*mapping.partition_tuple(
        _spec_fields(spec, state), schema, row.partition_values or {}
    ))
    stats: dict[str, Any] = {"record_count": row.record_count}
    if with_metrics and row.footer:
        try:
            # bounds serialised as the published (widest) types: int bounds as long
            stats = _footer_stats(row.footer, state.schema)
        except (ValueError, TypeError):  # metrics are optional in Iceberg; a file is not
            log.warning("no Iceberg metrics for %s", row.key, exc_info=True)
    df = IDataFile.from_args(
        content=DataFileContent.DATA,
        file_path=f"s3://{row.bucket}/{row.key}",
        file_format=FileFormat.PARQUET,
        partition=partition,
        file_size_in_bytes=row.size_bytes,
        sort_order_id=None,
        spec_id=spec.spec_id,
        equality_ids=None,
        key_metadata=None,
        **stats,
    )
    df.spec_id = spec.spec_id  # not a field of the struct: from_args would drop it
    return df


def _spec_fields(spec: PartitionSpec, state: _TableState) -> list[PartitionField]:
    """An Iceberg spec's fields as our partition fields (source columns by field id)."""
    out = []
    for f in spec.fields:
        col = next((s.by_id(f.source_id) for s in (state.schema, *state.schemas.values())
                    if s.by_id(f.source_id) is not None), None)
        if col is None:
            raise IcebergPublishError(f"partition source column {f.source_id} is unknown")
        out.append(PartitionField(column=col.name, transform=str(f.transform), name=f.name))
    return out


def _file_spec(tbl_metadata: Any, row: DataFile) -> PartitionSpec:
    """The spec a file was written under: the one whose fields its partition values
    name (the default one unless the table's partitioning changed since)."""
    keys = set(row.partition_values or {})
    specs = [tbl_metadata.spec(), *tbl_metadata.partition_specs]
    exact = [s for s in specs if {f.name for f in s.fields} == keys]
    if exact:
        return exact[0]
    # range fields are not in any spec: the spec whose fields are all among the keys
    within = [s for s in specs if {f.name for f in s.fields} <= keys]
    return max(within, key=lambda s: len(s.fields)) if within else tbl_metadata.spec()


def _footer_stats(footer: str, schema: Schema) -> dict[str, Any]:
    from pyiceberg.io.pyarrow import (
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
    )

    md = decode_footer(footer)
    arrow = md.schema.to_arrow_schema()
    # Parquet column path -> the field id the file itself carries (not the current
    # name's id: a renamed column keeps its id, and so its statistics).
    ids: dict[str, int] = {}
    for f in arrow:
        raw = (f.metadata or {}).get(b"PARQUET:field_id")
        if raw is not None:
            ids[f.name] = int(raw)
    known = {f.id for f in schema}
    ischema = to_iceberg_schema(schema)
    plan = compute_statistics_plan(ischema, {})
    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=md,
        stats_columns={k: v for k, v in plan.items() if k in known},
        parquet_column_mapping={p: i for p, i in ids.items() if i in known},
    )
    return dict(stats.to_serialized_dict())


# ------------------------------------------------------------------- the table


def _load_or_register(catalog: Catalog, state: _TableState) -> Table:
    from pyiceberg.exceptions import (
        NamespaceAlreadyExistsError,
        NoSuchTableError,
        TableAlreadyExistsError,
    )

    ident = identifier(state.namespace, state.name)
    try:
        return catalog.load_table(ident)
    except NoSuchTableError:
        pass
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(state.namespace)
    location = _write_initial_metadata(catalog, state)
    try:
        return catalog.register_table(ident, location)
    except TableAlreadyExistsError:  # another process registered it first
        return catalog.load_table(ident)


def _write_initial_metadata(catalog: Catalog, state: _TableState) -> str:
    """Write the table's first metadata file with OUR field ids and return its location.

    pyiceberg's ``create_table`` renumbers a schema's field ids from 1; our Parquet files
    carry the catalog's ids, so the first metadata is written here and registered.
    """
    import uuid

    from pyiceberg.serializers import ToOutputFile
    from pyiceberg.table.metadata import TableMetadataV2
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

    schema = to_iceberg_schema(state.schema)
    spec = to_partition_spec(state.table, state.schema)
    props = {k: v for k, v in TABLE_PROPERTIES.items() if k != "format-version"}
    props["datalake.table-id"] = state.id
    fields: dict[str, Any] = {  # pydantic model, populated by field name
        "location": table_location(state.namespace, state.name),
        "table_uuid": uuid.uuid4(),
        "last_updated_ms": int(time.time() * 1000),
        "last_column_id": max(schema.highest_field_id, 0),
        "schemas": [schema],
        "current_schema_id": schema.schema_id,
        "partition_specs": [spec],
        "default_spec_id": spec.spec_id,
        "last_partition_id": max(
            (f.field_id for f in spec.fields), default=mapping.PARTITION_FIELD_ID_START - 1
        ),
        "sort_orders": [UNSORTED_SORT_ORDER],
        "default_sort_order_id": UNSORTED_SORT_ORDER.order_id,
        "properties": props,
    }
    metadata = TableMetadataV2(**fields)
    path = (
        f"{metadata.location}/metadata/00000-{uuid.uuid4()}.metadata.json"
    )
    io_ = catalog._load_file_io(location=metadata.location)
    ToOutputFile.table_metadata(metadata, io_.new_output(path))
    return path


def _schema_updates(tbl: Table, state: _TableState) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The updates that make Iceberg's current schema and spec ours (none if they are)."""
    from pyiceberg.table.update import (
        AddPartitionSpecUpdate,
        AddSchemaUpdate,
        AssertCurrentSchemaId,
        AssertDefaultSpecId,
        SetCurrentSchemaUpdate,
        SetDefaultSpecUpdate,
    )

    md = tbl.metadata
    updates: list[Any] = []
    requirements: list[Any] = []
    want = to_iceberg_schema(state.schema)
    if not _same_fields(md.schema(), want):
        requirements.append(
            AssertCurrentSchemaId.model_validate({"current-schema-id": md.current_schema_id})
        )
        # A rollback goes back to an Iceberg schema that exists: the same ids, reused.
        existing = next((s for s in md.schemas if _same_fields(s, want)), None)
        if existing is not None:
            updates.append(SetCurrentSchemaUpdate.model_validate({"schema-id": existing.schema_id}))
        else:
            new_id = max(s.schema_id for s in md.schemas) + 1
            updates += [
                AddSchemaUpdate(schema=to_iceberg_schema(state.schema, new_id)),
                SetCurrentSchemaUpdate.model_validate({"schema-id": -1}),
            ]
    want_spec = to_partition_spec(state.table, state.schema)
    if _spec_key(md.spec()) != _spec_key(want_spec):
        requirements.append(
            AssertDefaultSpecId.model_validate({"default-spec-id": md.default_spec_id})
        )
        existing_spec = next(
            (s for s in md.partition_specs if _spec_key(s) == _spec_key(want_spec)), None
        )
        if existing_spec is not None:
            updates.append(SetDefaultSpecUpdate.model_validate({"spec-id": existing_spec.spec_id}))
        else:
            new_spec = _evolved_spec(md, want_spec)
            updates += [
                AddPartitionSpecUpdate(spec=new_spec),
                SetDefaultSpecUpdate.model_validate({"spec-id": -1}),
            ]
    return tuple(updates), tuple(requirements)


def _evolved_spec(md: Any, want: PartitionSpec) -> PartitionSpec:
    """``want`` as the table's next spec: a field that some spec had already keeps its
    partition field id, a new one gets the next unused id (Iceberg's rule)."""
    from pyiceberg.partitioning import PartitionField as IField
    from pyiceberg.partitioning import PartitionSpec as ISpec

    known = {
        (f.source_id, str(f.transform), f.name): f.field_id
        for s in md.partition_specs
        for f in s.fields
    }
    next_id = max([md.last_partition_id or 999, *known.values()]) + 1
    fields = []
    for f in want.fields:
        fid = known.get((f.source_id, str(f.transform), f.name))
        if fid is None:
            fid, next_id = next_id, next_id + 1
        fields.append(IField(source_id=f.source_id, field_id=fid, transform=f.transform,
                             name=f.name))
    return ISpec(*fields, spec_id=max(s.spec_id for s in md.partition_specs) + 1)


def last_published_seq(tbl: Table) -> int:
    """The catalog change the Iceberg table's current snapshot publishes (0: none yet)."""
    snap = tbl.current_snapshot()
    if snap is None or snap.summary is None:
        return 0
    return int(snap.summary.additional_properties.get(SUMMARY_SEQ, 0))


def find_job_snapshot(tbl: Table, job_id: str) -> int | None:
    """The id of the snapshot that published ``job_id`` (in the current history)."""
    for snap in _ancestors(tbl):
        if snap.summary is not None and snap.summary.additional_properties.get(
            SUMMARY_JOB
        ) == job_id:
            return int(snap.snapshot_id)
    return None


def _ancestors(tbl: Table) -> Iterable[Any]:
    snap = tbl.current_snapshot()
    seen: set[int] = set()
    while snap is not None and snap.snapshot_id not in seen:
        seen.add(snap.snapshot_id)
        yield snap
        snap = (
            tbl.metadata.snapshot_by_id(snap.parent_snapshot_id)
            if snap.parent_snapshot_id is not None
            else None
        )


# ------------------------------------------------------------------- publishing


@dataclass
class PublishResult:
    """What a publish did: the snapshots it committed, and where the table stands."""

    table_id: str
    published: list[int] = field(default_factory=list)  # the file_seq of each
    snapshot_ids: list[int] = field(default_factory=list)
    metadata_location: str | None = None
    seq: int = 0


def publish_table(table_id: str, *, settings: Settings | None = None,
                  attempts: int = PUBLISH_ATTEMPTS) -> PublishResult:
    """Bring the table's Iceberg table up to the catalog's current change, one Iceberg
    snapshot per catalog change (see the module's docstring). Idempotent.

    ``attempts`` bounds the tries when another process commits the same Iceberg table
    first; a caller that is retried as a whole (Commit, by the state machine) passes 1.

    Raises
    ------
    IcebergPublishError
        When Iceberg could not be brought up to date (after retrying conflicts); the
        catalog's state stands and a later publish catches up.
    """
    settings = settings or get_settings()
    result = PublishResult(table_id=table_id)
    if not enabled(settings):
        return result
    from pyiceberg.exceptions import CommitFailedException

    catalog = get_catalog(settings)
    for attempt in range(1, attempts + 1):
        try:
            _publish_once(catalog, table_id, result)
            return result
        except (CommitFailedException, CommitConflict) as e:
            if attempt >= attempts:
                raise IcebergPublishError(
                    f"Iceberg table of {table_id} kept changing underneath: {e}"
                ) from e
            time.sleep(min(0.05 * 2**attempt, 1.0))
    raise AssertionError("unreachable")


def _publish_once(catalog: Catalog, table_id: str, result: PublishResult) -> None:
    with session_scope() as session:
        state = _load_state(session, table_id)
    if not state.schema.fields:
        # A table whose schema is not settled has no data yet: its changes so far (empty
        # jobs) have nothing to show, so Iceberg shows all of them; recording that lets
        # such jobs end SUCCEEDED with iceberg_published true, as every other does.
        with session_scope() as session:
            SqlCatalog(session).record_iceberg_seq(state.id, state.file_seq)
        return
    tbl = _load_or_register(catalog, state)
    last = last_published_seq(tbl)
    result.seq = last
    if last < state.swept_seq and last < state.file_seq:
        # Rows of changes not yet published were swept (a table from before Iceberg
        # publishing): publish the current state in one snapshot instead.
        tbl = _publish_state(tbl, state)
        result.published.append(state.file_seq)
        _note(result, tbl)
        last = state.file_seq
    for seqs, job_id in _groups(state, list(range(last + 1, state.file_seq + 1))):
        if job_id is not None and find_job_snapshot(tbl, job_id) is not None:
            # Published already (the catalog's numbers went back: a restored backup);
            # the job id in the summary keeps it from being appended twice.
            log.warning("job %s is in the Iceberg table already; not appended again", job_id)
            continue
        tbl = _publish_change(tbl, state, seqs, job_id)
        result.published.extend(seqs)
        _note(result, tbl)
    tbl = _retract_corrupt(tbl, state)
    updates, requirements = _schema_updates(tbl, state)
    if updates:  # a schema change with no data change (an API version, a rollback)
        tx = tbl.transaction()
        tx._apply(updates, requirements)
        tbl = tx.commit_transaction()
    result.metadata_location = tbl.metadata_location
    # Only now, after Iceberg's commit: a crash before this line leaves the number
    # behind (the API then says "not yet in Iceberg" of a job that is), never ahead.
    with session_scope() as session:
        SqlCatalog(session).record_iceberg_seq(state.id, last_published_seq(tbl))


def _note(result: PublishResult, tbl: Table) -> None:
    snap = tbl.current_snapshot()
    if snap is not None:
        result.snapshot_ids.append(int(snap.snapshot_id))
        result.seq = last_published_seq(tbl)


def _groups(state: _TableState, seqs: list[int]) -> list[tuple[list[int], str | None]]:
    """The catalog changes ``seqs`` as Iceberg snapshots to make: each job's Commit on
    its own (with its job id); consecutive changes of no job (the merges of one
    compaction run, one transaction per partition) together, as one replace."""
    if not seqs:
        return []
    with session_scope() as session:
        by_seq = SqlCatalog(session).jobs_of_changes(state.id, seqs)
    groups: list[tuple[list[int], str | None]] = []
    for seq in seqs:
        job_id = by_seq.get(seq)
        if job_id is None and groups and groups[-1][1] is None:
            groups[-1][0].append(seq)
        else:
            groups.append(([seq], job_id))
    return groups


def _publish_change(
    tbl: Table, state: _TableState, seqs: list[int], job_id: str | None
) -> Table:
    """One Iceberg snapshot for the catalog changes ``seqs`` (and any schema update)."""
    from pyiceberg.table.snapshots import Operation

    with session_scope() as session:
        catalog = SqlCatalog(session)
        added = catalog.files_added_in(state.id, seqs)
        removed = catalog.files_removed_in(state.id, seqs)
    # a file both added and replaced within the group never shows in Iceberg
    transient = {f.id for f in added} & {f.id for f in removed}
    added = [f for f in added if f.id not in transient]
    removed = [f for f in removed if f.id not in transient]
    updates, requirements = _schema_updates(tbl, state)
    seq = max(seqs)
    tx = tbl.transaction()
    if updates:
        tx._apply(updates, requirements)
    summary = {SUMMARY_SEQ: str(seq)}
    if job_id is not None:
        summary[SUMMARY_JOB] = job_id
    if removed and job_id is None:
        summary[SUMMARY_CHANGE] = "compaction"
        operation = Operation.REPLACE
    elif removed:
        summary[SUMMARY_CHANGE] = "rebuild"
        operation = Operation.OVERWRITE
    else:
        summary[SUMMARY_CHANGE] = "commit" if job_id else "change"
        operation = Operation.APPEND
    from pyiceberg.exceptions import ValidationException

    try:
        return _commit_files(tx, tbl, state, summary, operation, added, removed, None)
    except ValidationException:
        # A file to remove that Iceberg does not list (it left already, e.g. as corrupt):
        # remove only the ones it lists (this reads every manifest, hence not by default).
        tx = tbl.transaction()
        if updates:
            tx._apply(updates, requirements)
        return _commit_files(
            tx, tbl, state, summary, operation, added, removed, _current_paths(tbl)
        )


def _commit_files(
    tx: Any,
    tbl: Table,
    state: _TableState,
    summary: dict[str, str],
    operation: Any,
    added: list[DataFile],
    removed: list[DataFile],
    only: set[str] | None,
) -> Table:
    producer: Any = (
        _rewrite_producer(tx, summary, operation)
        if removed
        else tx.update_snapshot(snapshot_properties=summary).fast_append()
    )
    with producer:
        for f in removed:
            if only is None or f"s3://{f.bucket}/{f.key}" in only:
                producer.delete_data_file(
                    data_file(f, state, _file_spec(tbl.metadata, f), with_metrics=False)
                )
        for f in added:
            producer.append_data_file(data_file(f, state, _file_spec(tx.table_metadata, f)))
    return tx.commit_transaction()


def _rewrite_producer(tx: Any, summary: dict[str, str], operation: Any) -> Any:
    """pyiceberg's overwrite producer (explicit files out and in), recording the
    snapshot's real operation: ``replace`` for a compaction (no row changed), ``delete``
    for files taken out. pyiceberg only computes summaries for append, overwrite and
    delete, so the totals are computed as an overwrite and the operation set after."""
    from pyiceberg.table.snapshots import Operation, Summary
    from pyiceberg.table.update.snapshot import _OverwriteFiles

    class _Rewrite(_OverwriteFiles):
        def _summary(self, snapshot_properties: dict[str, str] | None = None) -> Summary:
            computed = super()._summary(snapshot_properties or {})
            return Summary(operation, **computed.additional_properties)

    return _Rewrite(
        operation=Operation.OVERWRITE,
        transaction=tx,
        io=tx._table.io,
        snapshot_properties=summary,
    )


def _current_paths(tbl: Table) -> set[str]:
    snap = tbl.current_snapshot()
    if snap is None:
        return set()
    paths: set[str] = set()
    for manifest in snap.manifests(tbl.io):
        for entry in manifest.fetch_manifest_entry(tbl.io, discard_deleted=True):
            paths.add(entry.data_file.file_path)
    return paths


def _publish_state(tbl: Table, state: _TableState) -> Table:
    """One snapshot that makes Iceberg's file set the catalog's current one."""
    with session_scope() as session:
        rows = SqlCatalog(session).all_snapshot_files(state.id, state.file_seq)
    return _replace_files(tbl, state, rows, {SUMMARY_SEQ: str(state.file_seq),
                                             SUMMARY_CHANGE: "bootstrap"})


def _replace_files(
    tbl: Table, state: _TableState, wanted: Iterable[DataFile], summary: dict[str, str]
) -> Table:
    wanted_by_path = {f"s3://{f.bucket}/{f.key}": f for f in wanted}
    current = _current_entries(tbl)
    tx = tbl.transaction()
    updates, requirements = _schema_updates(tbl, state)
    if updates:
        tx._apply(updates, requirements)
    with tx.update_snapshot(snapshot_properties=summary).overwrite() as producer:
        for path, df in current.items():
            if path not in wanted_by_path:
                producer.delete_data_file(df)
        for path, f in wanted_by_path.items():
            if path not in current:
                producer.append_data_file(data_file(f, state, _file_spec(tx.table_metadata, f)))
    return tx.commit_transaction()


def _current_entries(tbl: Table) -> dict[str, IcebergDataFile]:
    snap = tbl.current_snapshot()
    out: dict[str, IcebergDataFile] = {}
    if snap is None:
        return out
    for manifest in snap.manifests(tbl.io):
        for entry in manifest.fetch_manifest_entry(tbl.io, discard_deleted=True):
            out[entry.data_file.file_path] = entry.data_file
    return out


def _retract_corrupt(tbl: Table, state: _TableState) -> Table:
    """Files verification took out of the table (CORRUPT: they have no change number)
    leave the Iceberg table too, in a delete snapshot of their own."""
    from pyiceberg.table.snapshots import Operation

    with session_scope() as session:
        corrupt = SqlCatalog(session).retracted_files(state.id)
    if not corrupt:
        return tbl
    current = _current_entries(tbl)
    gone = [current[p] for p in (f"s3://{f.bucket}/{f.key}" for f in corrupt) if p in current]
    if not gone:
        return tbl
    tx = tbl.transaction()
    summary = {SUMMARY_SEQ: str(last_published_seq(tbl)), SUMMARY_CHANGE: "corrupt"}
    with _rewrite_producer(tx, summary, Operation.DELETE) as producer:
        for df in gone:
            producer.delete_data_file(df)
    return tx.commit_transaction()


# ------------------------------------------------------------------- expiry


def expire_snapshots(
    table_id: str, *, retention_seconds: int, before_seq: int = 0, referenced: bool = True
) -> set[str] | None:
    """Expire the Iceberg snapshots of a table older than ``retention_seconds``, and
    those publishing a catalog change before ``before_seq`` (the current snapshot always
    stays); return the paths of the data files the remaining snapshots still list (None:
    the table is not published, nothing protects a file).

    ``before_seq`` is what the catalog's sweep is about to make its ``swept_seq``: our
    own listings refuse snapshots older than that from then on, and so does Iceberg.
    A replaced file may be deleted once it is not in the returned set.
    """
    if not enabled():
        return None
    from pyiceberg.exceptions import NoSuchTableError

    with session_scope() as session:
        t = SqlCatalog(session).get(DataLakeTable, table_id)
        if t is None:
            return None
        ident = identifier(t.namespace, t.name)
    try:
        tbl = get_catalog().load_table(ident)
    except NoSuchTableError:
        return None
    cutoff_ms = int((time.time() - retention_seconds) * 1000)
    current = tbl.current_snapshot()
    def seq_of(snap: Any) -> int:
        return int((snap.summary.additional_properties if snap.summary else {}).get(
            SUMMARY_SEQ, 0))

    old = [
        s.snapshot_id
        for s in tbl.metadata.snapshots
        if (s.timestamp_ms < cutoff_ms or seq_of(s) < before_seq)
        and (current is None or s.snapshot_id != current.snapshot_id)
    ]
    if old:
        tbl.maintenance.expire_snapshots().by_ids(old).commit()
        tbl = tbl.refresh()
    if not referenced:
        return set()
    paths: set[str] = set()
    seen: set[str] = set()
    for snap in tbl.metadata.snapshots:
        for manifest in snap.manifests(tbl.io):
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(tbl.io, discard_deleted=True):
                paths.add(entry.data_file.file_path)
    return paths


def delete_orphan_metadata(table_id: str, *, older_than_seconds: int) -> int:
    """Delete the table's metadata objects (manifest lists, manifests, metadata files)
    that neither the current metadata, its metadata log nor a retained snapshot refers
    to, once older than ``older_than_seconds`` (a commit in flight has written files
    not referred to yet). Returns how many were deleted."""
    if not enabled():
        return 0
    from pyiceberg.exceptions import NoSuchTableError

    with session_scope() as session:
        t = SqlCatalog(session).get(DataLakeTable, table_id)
        if t is None:
            return 0
        ident = identifier(t.namespace, t.name)
    try:
        tbl = get_catalog().load_table(ident)
    except NoSuchTableError:
        return 0
    keep = {tbl.metadata_location, *(e.metadata_file for e in tbl.metadata.metadata_log)}
    for snap in tbl.metadata.snapshots:
        keep.add(snap.manifest_list)
        keep.update(m.manifest_path for m in snap.manifests(tbl.io))
    bucket, prefix = _split(tbl.metadata.location.rstrip("/") + "/metadata/")
    cutoff = time.time() - older_than_seconds
    s3 = client("s3")
    doomed = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", []) or []
        if f"s3://{bucket}/{o['Key']}" not in keep and o["LastModified"].timestamp() <= cutoff
    ]
    for start in range(0, len(doomed), 1000):
        s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": k} for k in doomed[start : start + 1000]], "Quiet": True},
        )
    return len(doomed)


#: Metadata files younger than this are never orphans: a commit in flight in another
#: process may have written them and not yet swapped the catalog's pointer.
ORPHAN_MIN_AGE_SECONDS = 900


def maintain_table(table_id: str, *, retention_seconds: int) -> int:
    """The optimize schedule's Iceberg upkeep of a (published) table: expire snapshots
    older than the retention period, then delete the metadata files nothing refers to
    any more; returns how many metadata files were deleted. Data files are the sweep's
    (``services/compaction.py``): it deletes only those no retained snapshot lists."""
    if not enabled():
        return 0
    expire_snapshots(table_id, retention_seconds=retention_seconds, referenced=False)
    return delete_orphan_metadata(
        table_id, older_than_seconds=max(retention_seconds, ORPHAN_MIN_AGE_SECONDS)
    )
