"""Table schema <-> Avro (.avsc) conversions, validated with fastavro."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datalake.domain.avro_schema import avro_name, from_avro, to_avro, to_avsc
from datalake.domain.schema import Schema, SchemaField
from datalake.engine.avsc import validate
from datalake.errors import InvalidInput

ALL_TYPES = [
    ("b", "boolean", None),
    ("i", "int", "int"),
    ("l", "long", "long"),
    ("f", "float", "float"),
    ("d", "double", "double"),
    ("s", "string", "string"),
    ("bin", "binary", "bytes"),
    ("u", "uuid", {"type": "string", "logicalType": "uuid"}),
    ("day", "date", {"type": "int", "logicalType": "date"}),
    ("t", "time", {"type": "long", "logicalType": "time-micros"}),
    (
        "ts",
        "timestamp",
        {"type": "long", "logicalType": "local-timestamp-micros", "adjust-to-utc": False},
    ),
    (
        "tstz",
        "timestamptz",
        {"type": "long", "logicalType": "timestamp-micros", "adjust-to-utc": True},
    ),
    (
        "dec",
        "decimal(10,2)",
        {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
    ),
    ("fx", "fixed[16]", {"type": "fixed", "name": "fixed_14", "size": 16}),
]


def _schema(nullable: bool) -> Schema:
    return Schema(
        fields=tuple(
            SchemaField(id=i, name=name, type=typ, nullable=nullable)
            for i, (name, typ, _) in enumerate(ALL_TYPES, start=1)
        )
    )


@pytest.mark.parametrize("nullable", [True, False])
def test_every_type_round_trips_and_fastavro_accepts_it(nullable: bool) -> None:
    schema = _schema(nullable)
    avsc = to_avro(schema, "orders", "lake.sales")
    validate(avsc)
    validate(to_avsc(schema))
    assert avsc["type"] == "record" and avsc["name"] == "orders"
    assert avsc["namespace"] == "lake.sales"
    assert from_avro(avsc) == schema
    assert from_avro(json.dumps(avsc)) == schema


def test_field_shape() -> None:
    avsc = to_avro(_schema(True))
    by_name = {f["name"]: f for f in avsc["fields"]}
    for i, (name, _, expected) in enumerate(ALL_TYPES, start=1):
        field = by_name[name]
        assert field["field-id"] == i
        assert field["default"] is None
        assert field["type"][0] == "null"
        if expected is not None:
            assert field["type"][1] == expected
    required = {f["name"]: f for f in to_avro(_schema(False))["fields"]}
    assert required["l"]["type"] == "long" and "default" not in required["l"]


def test_records_write_and_read_with_fastavro() -> None:
    schema = _schema(True)
    parsed = validate(to_avro(schema))
    row = {
        "b": True,
        "i": 1,
        "l": 2**40,
        "f": 1.5,
        "d": 2.25,
        "s": "x",
        "bin": b"\x00\x01",
        "u": str(uuid.UUID(int=7)),
        "day": dt.date(2024, 2, 29),
        "t": dt.time(12, 30),
        "ts": dt.datetime(2024, 1, 1, 8, 0),
        "tstz": dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC),
        "dec": Decimal("12345678.90"),
        "fx": bytes(16),
    }
    buf = io.BytesIO()
    fastavro.writer(buf, parsed, [row, dict.fromkeys(row)])
    buf.seek(0)
    reader = fastavro.reader(buf)
    back = list(reader)
    assert back[0]["dec"] == Decimal("12345678.90")
    assert back[0]["ts"] == dt.datetime(2024, 1, 1, 8, 0)
    assert back[0]["tstz"] == dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC)
    assert back[1] == dict.fromkeys(row)
    assert from_avro(reader.writer_schema) == schema


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ok_name", "ok_name"),
        ("my col", "my_x20col"),
        ("1st", "_1st"),
        ("a-b.c", "a_x2Db_x2Ec"),
        ("é", "_xE9"),
    ],
)
def test_names_are_sanitised_like_iceberg(name: str, expected: str) -> None:
    assert avro_name(name) == expected
    schema = Schema(fields=(SchemaField(id=3, name=name, type="int"),))
    avsc = to_avro(schema)
    validate(avsc)
    field = avsc["fields"][0]
    assert field["name"] == expected
    assert field.get("iceberg-field-name") == (None if name == expected else name)
    assert from_avro(avsc) == schema


def test_sanitised_name_collision_is_disambiguated() -> None:
    schema = Schema(
        fields=(
            SchemaField(id=1, name="a b", type="int"),
            SchemaField(id=2, name="a_x20b", type="int"),
        )
    )
    avsc = to_avro(schema)
    validate(avsc)
    assert [f["name"] for f in avsc["fields"]] == ["a_x20b_1", "a_x20b"]
    assert from_avro(avsc) == schema


def test_doc_round_trips() -> None:
    schema = Schema(fields=(SchemaField(id=1, name="a", type="int", doc="the a"),))
    assert to_avro(schema)["fields"][0]["doc"] == "the a"
    assert from_avro(to_avro(schema)) == schema


def test_foreign_avro_schemas() -> None:
    avsc = {
        "type": "record",
        "name": "ext",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "maybe", "type": ["string", "null"]},
            {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "lms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
            {
                "name": "ice_ts",
                "type": {"type": "long", "logicalType": "timestamp-micros", "adjust-to-utc": False},
            },
            {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "color", "type": {"type": "enum", "name": "C", "symbols": ["R", "G"]}},
            {
                "name": "fdec",
                "type": {
                    "type": "fixed",
                    "name": "D",
                    "size": 8,
                    "logicalType": "decimal",
                    "precision": 18,
                    "scale": 4,
                },
            },
            {
                "name": "fuuid",
                "type": {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"},
            },
            {"name": "odd", "type": {"type": "string", "logicalType": "json"}},
        ],
    }
    validate(avsc)
    schema = from_avro(avsc)
    assert [(f.id, f.name, f.type, f.nullable) for f in schema] == [
        (1, "id", "long", False),
        (2, "maybe", "string", True),
        (3, "ms", "timestamptz", False),
        (4, "lms", "timestamp", False),
        (5, "ice_ts", "timestamp", False),
        (6, "tm", "time", False),
        (7, "color", "string", False),
        (8, "fdec", "decimal(18,4)", False),
        (9, "fuuid", "uuid", False),
        (10, "odd", "string", False),
    ]


def test_missing_field_ids_are_numbered_after_the_highest() -> None:
    avsc = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "a", "type": "int", "field-id": 7}, {"name": "b", "type": "int"}],
    }
    assert [f.id for f in from_avro(avsc)] == [7, 8]


@pytest.mark.parametrize(
    "avsc",
    [
        {
            "type": "record",
            "name": "r",
            "fields": [{"name": "n", "type": {"type": "record", "name": "N", "fields": []}}],
        },
        {
            "type": "record",
            "name": "r",
            "fields": [{"name": "n", "type": {"type": "array", "items": "int"}}],
        },
        {"type": "record", "name": "r", "fields": [{"name": "n", "type": ["int", "string"]}]},
        {"type": "record", "name": "r", "fields": [{"name": "n", "type": "null"}]},
        {"type": "record", "name": "r"},
        {"type": "array", "items": "int"},
        "not json",
    ],
)
def test_unsupported_avro_is_invalid_input(avsc: object) -> None:
    with pytest.raises(InvalidInput):
        from_avro(avsc)  # type: ignore[arg-type]


def test_validate_reports_fastavro_errors() -> None:
    with pytest.raises(InvalidInput, match="invalid Avro schema"):
        validate({"type": "record", "name": "r", "fields": [{"name": "a", "type": "nope"}]})


TYPES = [
    "boolean",
    "int",
    "long",
    "float",
    "double",
    "string",
    "binary",
    "uuid",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "decimal(38,0)",
    "decimal(5,5)",
    "fixed[3]",
]


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    names = draw(st.lists(st.text(min_size=1, max_size=8), unique_by=str.lower, max_size=6))
    ids = draw(
        st.lists(st.integers(1, 1000), unique=True, min_size=len(names), max_size=len(names))
    )
    return Schema(
        fields=tuple(
            SchemaField(
                id=i, name=n, type=draw(st.sampled_from(TYPES)), nullable=draw(st.booleans())
            )
            for i, n in zip(ids, names, strict=True)
        )
    )


@settings(max_examples=100, deadline=None)
@given(schemas())
def test_round_trip_property(schema: Schema) -> None:
    avsc = to_avro(schema)
    validate(avsc)
    assert from_avro(avsc) == schema
