"""Table schema <-> Avro schema JSON (``.avsc``), the way Apache Iceberg maps them.

=================  ==========================================================
table type         Avro
=================  ==========================================================
boolean            ``"boolean"``
int / long         ``"int"`` / ``"long"``
float / double     ``"float"`` / ``"double"``
string             ``"string"``
binary             ``"bytes"``
uuid               ``{"type": "string", "logicalType": "uuid"}``
date               ``{"type": "int", "logicalType": "date"}``
time               ``{"type": "long", "logicalType": "time-micros"}``
timestamp          ``{"type": "long", "logicalType": "local-timestamp-micros",
                   "adjust-to-utc": false}``
timestamptz        ``{"type": "long", "logicalType": "timestamp-micros",
                   "adjust-to-utc": true}``
decimal(P,S)       ``{"type": "bytes", "logicalType": "decimal", "precision": P,
                   "scale": S}``
fixed[N]           ``{"type": "fixed", "name": "fixed_<id>", "size": N}``
=================  ==========================================================

A nullable column is the union ``["null", T]`` with ``"default": null``; a required one is
``T``. Each field carries its id as the ``"field-id"`` attribute, as Iceberg writes it. A
column name that is not a valid Avro name is sanitised as Iceberg does (``_xHH`` for an
invalid character, ``_`` before a leading digit; ``_<id>`` appended should that collide
with another column's name) and the original kept in ``"iceberg-field-name"``.

Reading (:func:`from_avro`) also accepts what other writers produce: ``[T, "null"]``,
``timestamp-millis``/``local-timestamp-millis``/``time-millis``, ``timestamp-micros`` with
``"adjust-to-utc": false`` (Iceberg's timestamp), ``enum`` (as string), ``fixed`` with a
decimal or uuid logical type. Nested types (record, array, map) and unions of several
non-null types are refused. Pure Python: fastavro checks what it writes in
:func:`datalake.engine.avsc.validate`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from datalake.domain.schema import Schema, SchemaField
from datalake.domain.types import DecimalType, parse_type
from datalake.errors import InvalidInput

__all__ = [
    "FIELD_ID_PROP",
    "FIELD_NAME_PROP",
    "avro_name",
    "from_avro",
    "infer_field_type",
    "to_avro",
    "to_avsc",
]

#: The field attribute holding the column's id (Iceberg's name for it).
FIELD_ID_PROP = "field-id"
#: The field attribute holding the original name of a sanitised column (Iceberg's).
FIELD_NAME_PROP = "iceberg-field-name"

_VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_SIMPLE: dict[str, Any] = {
    "boolean": "boolean",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "string": "string",
    "binary": "bytes",
    "uuid": {"type": "string", "logicalType": "uuid"},
    "date": {"type": "int", "logicalType": "date"},
    "time": {"type": "long", "logicalType": "time-micros"},
    "timestamp": {"type": "long", "logicalType": "local-timestamp-micros", "adjust-to-utc": False},
    "timestamptz": {"type": "long", "logicalType": "timestamp-micros", "adjust-to-utc": True},
}

_FIXED = re.compile(r"^fixed\[(\d+)\]$")


def avro_name(name: str) -> str:
    """Make ``name`` a valid Avro name the way Iceberg does.

    Parameters
    ----------
    name:
        A column name.

    Returns
    -------
    str
        ``name`` itself when valid; otherwise each invalid character replaced by
        ``_x`` + its code point in upper-case hex, and a leading digit prefixed by ``_``.
    """
    if _VALID_NAME.match(name):
        return name

    def ok(ch: str, first: bool) -> bool:
        return ch.isascii() and (ch.isalpha() or ch == "_" or (ch.isdigit() and not first))

    out = []
    for i, ch in enumerate(name):
        if ok(ch, i == 0):
            out.append(ch)
        elif i == 0 and ch.isascii() and ch.isdigit():
            out.append("_" + ch)
        else:
            out.append(f"_x{ord(ch):X}")
    return "".join(out)


def _avro_type(field: SchemaField) -> Any:
    parsed = parse_type(field.type)
    if isinstance(parsed, DecimalType):
        return {
            "type": "bytes",
            "logicalType": "decimal",
            "precision": parsed.precision,
            "scale": parsed.scale,
        }
    m = _FIXED.match(parsed)
    if m:
        return {"type": "fixed", "name": f"fixed_{field.id}", "size": int(m.group(1))}
    return dict(_SIMPLE[parsed]) if isinstance(_SIMPLE[parsed], dict) else _SIMPLE[parsed]


def to_avro(schema: Schema, name: str = "record", namespace: str | None = None) -> dict[str, Any]:
    """Convert a table schema to an Avro record schema.

    Parameters
    ----------
    schema:
        The table schema.
    name:
        The record's name (sanitised with :func:`avro_name`).
    namespace:
        The record's namespace, if any (dotted Avro names).

    Returns
    -------
    dict
        The ``.avsc`` JSON object; see the module docstring for the mapping.
    """
    fields = []
    used = {f.name for f in schema.fields if _VALID_NAME.match(f.name)}
    for f in schema.fields:
        typ = _avro_type(f)
        safe = avro_name(f.name)
        if safe != f.name:  # "a b" -> "a_x20b" may collide with a real name
            base, n = safe, f.id
            while safe in used:
                safe, n = f"{base}_{n}", n + 1
        used.add(safe)
        entry: dict[str, Any] = {"name": safe}
        if f.doc:
            entry["doc"] = f.doc
        if f.nullable:
            entry["type"] = ["null", typ]
            entry["default"] = None
        else:
            entry["type"] = typ
        entry[FIELD_ID_PROP] = f.id
        if entry["name"] != f.name:
            entry[FIELD_NAME_PROP] = f.name
        fields.append(entry)
    record: dict[str, Any] = {"type": "record", "name": avro_name(name)}
    if namespace:
        record["namespace"] = ".".join(avro_name(part) for part in namespace.split("."))
    record["fields"] = fields
    return record


def to_avsc(schema: Schema, name: str = "record", namespace: str | None = None) -> str:
    """The ``.avsc`` text of :func:`to_avro` (indented JSON)."""
    return json.dumps(to_avro(schema, name, namespace), indent=2)


_TIMESTAMP_LOGICAL = {
    "timestamp-micros": "timestamptz",
    "timestamp-millis": "timestamptz",
    "timestamp-nanos": "timestamptz",
    "local-timestamp-micros": "timestamp",
    "local-timestamp-millis": "timestamp",
    "local-timestamp-nanos": "timestamp",
}


def _table_type(avro: Any, column: str) -> str:
    """The table type of one (non-union) Avro type."""
    if isinstance(avro, str):
        simple = {
            "boolean": "boolean",
            "int": "int",
            "long": "long",
            "float": "float",
            "double": "double",
            "string": "string",
            "bytes": "binary",
        }
        if avro in simple:
            return simple[avro]
        raise InvalidInput(f"column {column!r}: unsupported Avro type {avro!r}")
    if not isinstance(avro, Mapping):
        raise InvalidInput(f"column {column!r}: unsupported Avro type {avro!r}")
    base = avro.get("type")
    logical = avro.get("logicalType")
    if logical == "decimal" and base in ("bytes", "fixed"):
        try:
            return str(parse_type(f"decimal({int(avro['precision'])},{int(avro.get('scale', 0))})"))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"column {column!r}: malformed decimal {dict(avro)!r}") from e
    if logical == "uuid" and base in ("string", "fixed"):
        return "uuid"
    if logical == "date" and base == "int":
        return "date"
    if logical in ("time-micros", "time-millis") and base in ("long", "int"):
        return "time"
    if logical in _TIMESTAMP_LOGICAL and base == "long":
        adjust = avro.get("adjust-to-utc")
        if isinstance(adjust, bool):  # Iceberg marks both kinds with timestamp-micros
            return "timestamptz" if adjust else "timestamp"
        return _TIMESTAMP_LOGICAL[logical]
    if base == "enum":
        return "string"
    if base == "fixed":
        try:
            return str(parse_type(f"fixed[{int(avro['size'])}]"))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"column {column!r}: malformed fixed {dict(avro)!r}") from e
    if isinstance(base, str | Mapping) and base not in ("record", "array", "map", "error"):
        return _table_type(base, column)  # unknown logical type: its underlying type
    raise InvalidInput(f"column {column!r}: nested Avro type {base!r} is not supported")


def _field_type(avro: Any, column: str) -> tuple[str, bool]:
    """``(table type, nullable)`` of an Avro field type."""
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise InvalidInput(
                f"column {column!r}: only unions of one type with null are supported, got {avro!r}"
            )
        return _table_type(branches[0], column), len(branches) < len(avro)
    return _table_type(avro, column), False


def infer_field_type(avro: Any, column: str = "") -> str:
    """The table type an ingest infers for an Avro field type (a file's writer schema).

    The same mapping as :func:`from_avro` (``timestamp-micros`` honours
    ``"adjust-to-utc"``, ``fixed`` is ``fixed[N]``), but lenient, as inference must be: a
    type no table column can hold (a record, array or map, a union of several non-null
    types) is ``string``, so such values arrive as their text rather than failing the job.

    Parameters
    ----------
    avro:
        The field's Avro type (a name, an object or a union list).
    column:
        The field's name, for messages.

    Returns
    -------
    str
        An Iceberg type name.
    """
    try:
        return _field_type(avro, column)[0]
    except InvalidInput:
        return "string"


def from_avro(avsc: Mapping[str, Any] | str) -> Schema:
    """Convert an Avro record schema to a table schema.

    Parameters
    ----------
    avsc:
        The ``.avsc`` JSON object, or its text.

    Returns
    -------
    Schema
        Fields in order; ids from the ``"field-id"`` attributes, and for fields without
        one, numbered after the highest id; names from ``"iceberg-field-name"`` when
        present.

    Raises
    ------
    InvalidInput
        When ``avsc`` is not an Avro record schema or holds an unsupported type.
    """
    if isinstance(avsc, str):
        try:
            avsc = json.loads(avsc)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"invalid Avro schema JSON: {e}") from e
    if not isinstance(avsc, Mapping) or avsc.get("type") != "record":
        raise InvalidInput("an Avro schema for a table must be a record")
    raw_fields = avsc.get("fields")
    if not isinstance(raw_fields, list):
        raise InvalidInput("an Avro record schema needs a 'fields' list")
    fields: list[dict[str, Any]] = []
    for raw in raw_fields:
        if not isinstance(raw, Mapping) or "name" not in raw or "type" not in raw:
            raise InvalidInput(f"malformed Avro field {raw!r}")
        name = str(raw.get(FIELD_NAME_PROP) or raw["name"])
        typ, nullable = _field_type(raw["type"], name)
        item: dict[str, Any] = {"name": name, "type": typ, "nullable": nullable}
        if raw.get(FIELD_ID_PROP) is not None:
            item["id"] = int(raw[FIELD_ID_PROP])
        if raw.get("doc"):
            item["doc"] = str(raw["doc"])
        fields.append(item)
    return Schema.from_json({"fields": fields})
