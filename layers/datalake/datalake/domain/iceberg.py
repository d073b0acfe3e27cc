"""How a table is described to Apache Iceberg: schema, partition spec, partition tuples.

Pure Python: the mapping is written against the Iceberg table specification (types,
transforms, the partition value of a data file), not against a library, so it can be
unit-tested without I/O and the publishing adapter (``services/iceberg.py``) only
translates these descriptions into pyiceberg objects.

Our types already are Iceberg's primitive names and our columns carry Iceberg field ids,
so the schema maps one to one. Partition transforms map by name, except ``range[...]``,
which Iceberg has no transform for: it is left out of the published spec (see
:func:`partition_spec`), and readers prune on the files' column bounds instead.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from dataclasses import dataclass
from typing import Any

from datalake.domain.partitioning import PartitionField, parse_transform
from datalake.domain.schema import Schema
from datalake.domain.types import DecimalType, parse_type
from datalake.errors import InvalidInput

#: The first partition field id of a spec (Iceberg reserves ids from 1000 for them).
PARTITION_FIELD_ID_START = 1000
EPOCH_DATE = dt.date(1970, 1, 1)
EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class IcebergColumn:
    """One top-level column of an Iceberg schema."""

    field_id: int
    name: str
    type: str  # Iceberg's type string: "long", "decimal(10, 2)", "fixed[16]"
    required: bool
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class IcebergPartitionField:
    """One field of an Iceberg partition spec."""

    source_id: int
    field_id: int
    name: str
    transform: str  # "identity", "day", "bucket[16]", "truncate[4]", ...


def iceberg_type(type_name: str) -> str:
    """Iceberg's string for one of our (canonical) type names.

    Raises
    ------
    InvalidInput
        When the name is not a known type.
    """
    t = parse_type(type_name)
    if isinstance(t, DecimalType):
        return f"decimal({t.precision}, {t.scale})"
    return t


def iceberg_schema(schema: Schema) -> list[IcebergColumn]:
    """The Iceberg schema of a table schema: the same field ids, names and types.

    Nullability is published as Iceberg's ``required`` flag, except that a column is
    published optional whenever our schema would let an older file lack it (Iceberg
    readers fill a missing optional column with nulls; a missing required one is an
    error), which is always the case for columns added after the first version; the
    caller passes the schema as is and decides with :func:`published_required`.
    """
    return [
        IcebergColumn(f.id, f.name, iceberg_type(f.type), not f.nullable, f.doc) for f in schema
    ]


def published_required(columns: list[IcebergColumn]) -> list[IcebergColumn]:
    """Columns with ``required`` dropped: every published column is optional.

    Why: our evolution may add a required column (``FORWARD`` mode) or tighten
    optional -> required, which Iceberg forbids for existing data; and a required column
    makes Iceberg readers reject files that lack it. Publishing every column as optional
    keeps every old file readable in every engine, whatever our compatibility mode did;
    our own conformance still enforces non-null values on ingest.
    """
    return [IcebergColumn(c.field_id, c.name, c.type, False, c.doc) for c in columns]


def widened(current: Schema, history: list[Schema]) -> Schema:
    """The current schema with each column at the widest type it has had.

    Iceberg only ever widens a column (int->long, float->double, decimal precision up);
    our rollbacks may narrow one back (under compatibility ``NONE``). Files written
    under the wider type still hold wide values, so the published type stays wide:
    every engine can read every file by field id, and our own reader applies the
    narrower current type itself.
    """
    from datalake.domain.types import is_safe_promotion

    fields = []
    for f in current:
        widest = f.type
        for old in history:
            o = old.by_id(f.id)
            if o is not None and o.type != widest and is_safe_promotion(widest, o.type):
                widest = o.type
        fields.append(f.model_copy(update={"type": widest}))
    return Schema(fields=tuple(fields))


def partition_spec(
    fields: list[PartitionField], schema: Schema
) -> tuple[list[IcebergPartitionField], list[PartitionField]]:
    """The Iceberg partition spec of a table's partitioning.

    Returns
    -------
    (published, omitted)
        The spec's fields (field ids from 1000 in order) and the fields left out:
        ``range[...]`` has no Iceberg transform, so its files are published without that
        dimension of their partition; engines still skip them by the column bounds each
        data file carries (every file of one range holds only values of that range).

    Raises
    ------
    InvalidInput
        When a partition column is not in the schema.
    """
    published: list[IcebergPartitionField] = []
    omitted: list[PartitionField] = []
    for f in fields:
        t = parse_transform(f.transform)
        if t.kind == "range":
            omitted.append(f)
            continue
        col = schema.find(f.column)
        if col is None:
            raise InvalidInput(f"partition column {f.column!r} is not in the schema")
        published.append(
            IcebergPartitionField(
                source_id=col.id,
                field_id=PARTITION_FIELD_ID_START + len(published),
                name=f.path_name,
                transform=str(t),
            )
        )
    return published, omitted


def partition_tuple(
    fields: list[PartitionField], schema: Schema, values: dict[str, Any]
) -> tuple[Any, ...]:
    """A data file's Iceberg partition value: the spec's fields, in order.

    Parameters
    ----------
    fields:
        The table's partitioning.
    schema:
        The schema the file was written with (for the source columns' types).
    values:
        The file's partition as our catalog holds it: path name -> Iceberg's human
        string (``2017-11-16``, ``2017-11``, ``3`` ...) or ``None`` for null.

    Returns
    -------
    tuple
        Iceberg's internal value per published field: ``int`` for year, month, day
        (days since 1970), hour and bucket; the source type's value for identity and
        truncate (dates as days, timestamps and times as microseconds, decimals as
        :class:`decimal.Decimal`, uuids as :class:`uuid.UUID`, binary as bytes).

    Raises
    ------
    InvalidInput
        When a value does not parse as its field's type.
    """
    published, _omitted = partition_spec(fields, schema)
    by_name = {f.path_name: f for f in fields}
    out: list[Any] = []
    for pf in published:
        field = by_name[pf.name]
        raw = values.get(pf.name)
        col = schema.find(field.column)
        assert col is not None  # partition_spec checked it
        out.append(None if raw is None else _value(str(raw), field, col.type))
    return tuple(out)


def _value(text: str, field: PartitionField, type_name: str) -> Any:
    kind = parse_transform(field.transform).kind
    try:
        if kind == "year":
            return int(text) - 1970
        if kind == "month":
            y, m = text.split("-")
            return (int(y) - 1970) * 12 + int(m) - 1
        if kind == "day":
            return (dt.date.fromisoformat(text) - EPOCH_DATE).days
        if kind == "hour":
            day, hour = text.rsplit("-", 1)
            return (dt.date.fromisoformat(day) - EPOCH_DATE).days * 24 + int(hour)
        if kind == "bucket":
            return int(text)
        return source_value(text, type_name)  # identity, truncate: the source's type
    except (ValueError, ArithmeticError) as e:
        raise InvalidInput(
            f"partition value {text!r} of {field.path_name!r} is not a valid {kind} value"
        ) from e


def source_value(text: str, type_name: str) -> Any:
    """Iceberg's internal value of a column value written as our path string.

    The inverse of the engine's path formatting (``engine.transforms.human_string``).
    """
    t = parse_type(type_name)
    if isinstance(t, DecimalType):
        return decimal.Decimal(text).quantize(decimal.Decimal(1).scaleb(-t.scale))
    if t in ("int", "long"):
        return int(text)
    if t in ("float", "double"):
        return float(text)
    if t == "boolean":
        return text.lower() == "true"
    if t == "string":
        return text
    if t == "date":
        return (dt.date.fromisoformat(text) - EPOCH_DATE).days
    if t == "time":
        tm = dt.time.fromisoformat(text)
        return ((tm.hour * 60 + tm.minute) * 60 + tm.second) * 10**6 + tm.microsecond
    if t in ("timestamp", "timestamptz"):
        ts = dt.datetime.fromisoformat(text)
        if ts.tzinfo is not None:
            ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
        delta = ts - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds
    if t == "uuid":
        return uuid.UUID(text)
    if t == "binary" or str(t).startswith("fixed["):
        return base64.b64decode(text)
    raise InvalidInput(f"no Iceberg partition value for type {type_name}")
