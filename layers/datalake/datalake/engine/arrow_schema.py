"""Iceberg type names <-> Arrow types, and schema sampling from source objects."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa

from datalake.domain.avro_schema import infer_field_type
from datalake.domain.schema import Schema, SchemaField
from datalake.domain.types import DecimalType, parse_type
from datalake.domain.vocabulary import SourceFormat
from datalake.engine.streams import json_objects
from datalake.errors import CorruptInput, InvalidInput, excerpt

FIELD_ID_KEY = b"PARQUET:field_id"
#: An ISO-8601 date-time as JSON writers spell it (pandas' ``to_json(date_format="iso")``
#: writes ``2013-01-01T10:00:00.000Z``): whole, milli- or microseconds, naive, ``Z`` or a
#: ``+hh:mm`` offset. pyarrow's JSON reader types only the whole-second ones itself.
_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?$"


def to_arrow_type(type_name: str) -> pa.DataType:
    """The Arrow type that stores an Iceberg type.

    ``timestamp`` -> ``timestamp[us]``, ``timestamptz`` -> ``timestamp[us, UTC]``,
    ``decimal(p,s)`` -> ``decimal128(p,s)``, ``uuid`` -> ``string`` (canonical text,
    friendly to DuckDB and every Parquet reader), ``time`` -> ``time64[us]``,
    ``fixed[n]`` -> ``binary``.
    """
    t = parse_type(type_name)
    if isinstance(t, DecimalType):
        return pa.decimal128(t.precision, t.scale)
    mapping = {
        "boolean": pa.bool_(),
        "int": pa.int32(),
        "long": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "date": pa.date32(),
        "time": pa.time64("us"),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "string": pa.string(),
        "uuid": pa.string(),
        "binary": pa.binary(),
    }
    if t in mapping:
        return mapping[t]
    if t.startswith("fixed["):
        return pa.binary()
    raise InvalidInput(f"no Arrow type for {type_name!r}")


def to_arrow_field(f: SchemaField) -> pa.Field:
    return pa.field(f.name, to_arrow_type(f.type), nullable=f.nullable,
                    metadata={FIELD_ID_KEY: str(f.id).encode()})


def to_arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of a table, each field carrying ``PARQUET:field_id``."""
    return pa.schema([to_arrow_field(f) for f in schema.fields])


def iceberg_type_of(t: pa.DataType) -> str:
    """The Iceberg type name for an Arrow type (nested and unknown types -> string)."""
    if pa.types.is_dictionary(t):
        return iceberg_type_of(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        if t.bit_width < 32 or (t.bit_width == 32 and pa.types.is_signed_integer(t)):
            return "int"
        return "long"
    if pa.types.is_floating(t):
        return "double" if t.bit_width == 64 else "float"
    if pa.types.is_decimal(t):
        if t.precision > 38:
            return "string"
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    return "string"


def infer_schema(arrow_schema: pa.Schema) -> Schema:
    """An Iceberg schema for an Arrow schema: ids 1..n in order, every field nullable."""
    fields = []
    for i, f in enumerate(arrow_schema, start=1):
        fields.append(SchemaField(id=i, name=f.name, type=iceberg_type_of(f.type), nullable=True))
    return Schema(fields=tuple(fields))


# ------------------------------------------------------------------------- sampling


def sample_schema(split: Any, *, store: Any, options: dict[str, Any] | None = None) -> Schema:
    """Infer a schema from the first ~1 MB (CSV, JSON Lines), the footer (Parquet) or
    the header (Avro) of a split's object.

    Raises
    ------
    CorruptInput
        When the sample cannot be parsed.
    """
    import pyarrow.csv as pcsv
    import pyarrow.json as pj

    from datalake.engine.splits import (
        SAMPLE_BYTES,
        _cut_at_newline,
        _prefix,
        check_text,
        csv_options,
    )
    from datalake.engine.store import ObjectInfo

    options = options or {}
    obj = ObjectInfo(split.bucket, split.key, split.size, split.etag)
    if split.format == SourceFormat.CSV:
        opts = csv_options(options)
        data, complete = _prefix(store, obj, split.compression, SAMPLE_BYTES)
        check_text(data, split.format, obj.uri)
        data = _cut_at_newline(data, complete)
        try:
            # A record with the wrong number of fields is skipped, as the reader skips
            # (and quarantines) it: the sample types the columns, it judges no record.
            t = pcsv.read_csv(
                io.BytesIO(data),
                read_options=pcsv.ReadOptions(skip_rows=opts["skip_rows"],
                                              autogenerate_column_names=not opts["header"]),
                parse_options=pcsv.ParseOptions(delimiter=opts["delimiter"],
                                                quote_char=opts["quote_char"],
                                                escape_char=opts["escape_char"],
                                                newlines_in_values=True,
                                                invalid_row_handler=lambda row: "skip"),
                convert_options=pcsv.ConvertOptions(null_values=opts["null_values"],
                                                    strings_can_be_null=True),
            )
        except pa.ArrowInvalid as e:
            raise CorruptInput(f"cannot sample CSV {obj.uri}: {excerpt(str(e))}") from e
        return infer_schema(t.schema)
    if split.format == SourceFormat.JSONL:
        data, complete = _prefix(store, obj, split.compression, SAMPLE_BYTES)
        check_text(data, split.format, obj.uri)
        data = _cut_at_newline(data, complete)
        try:
            t = pj.read_json(io.BytesIO(data))
        except pa.ArrowInvalid:
            t = _json_sample_python(data, obj.uri)
        return infer_schema(_json_timestamps(t))
    if split.format == SourceFormat.PARQUET:
        import pyarrow.parquet as pq

        from datalake.engine.streams import open_at

        f = open_at(store, split.bucket, split.key, size=split.size, etag=split.etag)
        try:
            return infer_schema(pq.ParquetFile(f).schema_arrow)
        except (pa.ArrowInvalid, OSError) as e:
            raise CorruptInput(f"{obj.uri} is not a readable Parquet file: {e}") from e
        finally:
            f.close()
    if split.format == SourceFormat.AVRO:
        from datalake.engine.avro import read_header

        header = read_header(store, split.bucket, split.key, split.size, split.etag)
        return avro_to_schema(header.schema)
    raise InvalidInput(f"unknown format {split.format!r}")


def _json_timestamps(table: pa.Table) -> pa.Schema:
    """A JSON sample's Arrow schema, with every string column whose values are all
    ISO-8601 date-times (:data:`_ISO_TIMESTAMP`) typed ``timestamp``: naive, offset
    values read as UTC, as pyarrow's JSON reader types the whole-second ones."""
    import pyarrow.compute as pc

    fields = []
    for f, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            values = column.drop_null()
            if len(values) and pc.all(pc.match_substring_regex(values, _ISO_TIMESTAMP)).as_py():
                f = f.with_type(pa.timestamp("us"))
        fields.append(f)
    return pa.schema(fields)


def _json_sample_python(data: bytes, uri: str) -> pa.Table:
    rows, names = json_objects(data.splitlines(), uri, first=1)
    cols = {}
    for name in names:
        vals = [r.get(name) for r in rows]
        try:
            cols[name] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            cols[name] = pa.array([None if v is None else json.dumps(v) if not isinstance(
                v, str) else v for v in vals], pa.string())
    return pa.table(cols)


def avro_to_schema(avro_schema: dict[str, Any]) -> Schema:
    """An Iceberg schema for an Avro record schema (ids 1..n, all nullable).

    Types are the domain's mapping (:func:`datalake.domain.avro_schema.infer_field_type`);
    names are the file's own, as its records spell them.
    """
    fields = []
    for i, f in enumerate(avro_schema.get("fields", []), start=1):
        typ = infer_field_type(f["type"], f["name"])
        fields.append(SchemaField(id=i, name=f["name"], type=typ, nullable=True))
    return Schema(fields=tuple(fields))
