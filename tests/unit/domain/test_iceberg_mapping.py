"""The description of a table to Iceberg (domain/iceberg.py): types, specs, partition
tuples, checked against pyiceberg's own transforms (no I/O)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datalake.domain import iceberg as m
from datalake.domain.partitioning import human_string, parse_partitioning, parse_transform
from datalake.domain.schema import Schema
from datalake.engine.transforms import apply_transform
from datalake.errors import InvalidInput

SCHEMA = Schema.from_json({"fields": [
    {"id": 1, "name": "id", "type": "long"},
    {"id": 3, "name": "ts", "type": "timestamp"},
    {"id": 4, "name": "day", "type": "date"},
    {"id": 7, "name": "carrier", "type": "string", "nullable": False},
    {"id": 9, "name": "amount", "type": "decimal(10,2)"},
]})


def test_types_are_icebergs_and_every_column_is_published_optional() -> None:
    cols = m.iceberg_schema(SCHEMA)
    assert [(c.field_id, c.name, c.type, c.required) for c in cols] == [
        (1, "id", "long", False), (3, "ts", "timestamp", False), (4, "day", "date", False),
        (7, "carrier", "string", True), (9, "amount", "decimal(10, 2)", False),
    ]
    assert [c.required for c in m.published_required(cols)] == [False] * 5
    assert m.iceberg_type("bigint") == "long"
    with pytest.raises(InvalidInput):
        m.iceberg_type("varchar(3)")


def test_widened_keeps_the_widest_type_a_column_has_had() -> None:
    v1 = Schema.of([("id", "int"), ("score", "float"), ("city", "string")])
    v2 = Schema.of([("id", "long"), ("score", "double"), ("city", "string")])
    rolled_back = Schema.of([("id", "int"), ("score", "float")])
    got = m.widened(rolled_back, [v1, v2, rolled_back])
    assert [(f.id, f.name, f.type) for f in got] == [(1, "id", "long"), (2, "score", "double")]


def test_partition_spec_maps_transforms_and_leaves_range_out() -> None:
    fields = parse_partitioning([
        {"column": "ts", "transform": "day"},
        {"column": "id", "transform": "range[10,20]"},
        {"column": "carrier", "transform": "bucket[16]"},
        {"column": "carrier", "transform": "truncate[2]", "name": "c2"},
    ])
    published, omitted = m.partition_spec(fields, SCHEMA)
    assert [(p.source_id, p.field_id, p.name, p.transform) for p in published] == [
        (3, 1000, "ts_day", "day"), (7, 1001, "carrier_bucket", "bucket[16]"),
        (7, 1002, "c2", "truncate[2]"),
    ]
    assert [f.path_name for f in omitted] == ["id_range"]
    with pytest.raises(InvalidInput):
        m.partition_spec(parse_partitioning([{"column": "nope", "transform": "day"}]), SCHEMA)


def test_partition_tuple_parses_path_values_into_icebergs_internal_values() -> None:
    fields = parse_partitioning([
        {"column": "ts", "transform": "hour"}, {"column": "ts", "transform": "month"},
        {"column": "day", "transform": "identity"}, {"column": "amount", "transform": "identity"},
        {"column": "carrier", "transform": "bucket[4]"}, {"column": "id", "transform": "range[5]"},
    ])
    values = {"ts_hour": "2017-11-16-22", "ts_month": "2017-11", "day": "2017-11-16",
              "amount": "14.20", "carrier_bucket": None, "id_range": "ge_5"}
    assert m.partition_tuple(fields, SCHEMA, values) == (
        17486 * 24 + 22, 47 * 12 + 10, 17486, decimal.Decimal("14.20"), None
    )
    with pytest.raises(InvalidInput):
        m.partition_tuple(fields, SCHEMA, {**values, "ts_month": "November"})


@pytest.mark.parametrize(
    ("type_name", "text", "value"),
    [
        ("int", "34", 34), ("boolean", "true", True), ("double", "1.5", 1.5),
        ("date", "1970-01-02", 1), ("time", "00:00:01.000002", 1_000_002),
        ("timestamp", "1970-01-01T00:00:01", 1_000_000),
        ("timestamptz", "1970-01-01T01:00:00+01:00", 0),
        ("uuid", "f79c3e09-677c-4bbd-a479-3f349cb785e7",
         uuid.UUID("f79c3e09-677c-4bbd-a479-3f349cb785e7")),
        ("binary", "AAE=", b"\x00\x01"), ("decimal(4,2)", "1.5", decimal.Decimal("1.50")),
    ],
)
def test_source_values(type_name: str, text: str, value: object) -> None:
    assert m.source_value(text, type_name) == value


def _pyiceberg_value(kind: str, param: int | None, type_name: str, v: object) -> object:
    """What pyiceberg's own transform gives for a Python value (the reference)."""
    from pyiceberg import transforms as t
    from pyiceberg import types as it
    from pyiceberg.utils.datetime import date_to_days, datetime_to_micros

    itype = {"timestamp": it.TimestampType(), "date": it.DateType(),
             "string": it.StringType(), "long": it.LongType()}[type_name]
    transform = {
        "year": t.YearTransform(), "month": t.MonthTransform(), "day": t.DayTransform(),
        "hour": t.HourTransform(), "identity": t.IdentityTransform(),
        "bucket": t.BucketTransform(param or 1), "truncate": t.TruncateTransform(param or 1),
    }[kind]
    if isinstance(v, dt.datetime):
        v = datetime_to_micros(v)
    elif isinstance(v, dt.date):
        v = date_to_days(v)
    return transform.transform(itype)(v)


@settings(max_examples=60, deadline=None)
@given(
    ts=st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    text=st.text(min_size=1, max_size=12),
    n=st.integers(min_value=-(2**62), max_value=2**62),
    spec=st.sampled_from(["year", "month", "day", "hour", "identity", "bucket[7]",
                          "truncate[3]"]),
)
def test_engine_paths_parse_back_to_icebergs_transform_values(
    ts: dt.datetime, text: str, n: int, spec: str
) -> None:
    """Engine value -> path string -> partition tuple == pyiceberg's transform(value)."""
    transform = parse_transform(spec)
    cases: list[tuple[str, object, pa.Array]] = [("long", n, pa.array([n], pa.int64()))]
    if transform.kind in ("year", "month", "day", "hour", "identity", "bucket"):
        cases.append(("timestamp", ts, pa.array([ts], pa.timestamp("us"))))
    if transform.kind in ("identity", "bucket", "truncate"):
        cases.append(("string", text, pa.array([text])))
    for type_name, value, arr in cases:
        if transform.kind in ("year", "month", "day", "hour") and type_name != "timestamp":
            continue
        schema = Schema.of([("c", type_name)])
        fields = parse_partitioning([{"column": "c", "transform": spec, "name": "p"}])
        out = apply_transform(arr, type_name, transform).to_pylist()[0]
        path_value = human_string(out, type_name, transform)
        got = m.partition_tuple(fields, schema, {"p": path_value})[0]
        assert got == _pyiceberg_value(transform.kind, transform.param, type_name, value), (
            type_name, spec, value, path_value)
