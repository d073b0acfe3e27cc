"""Plan's Avro type inference is the domain's mapping (one mapping, Iceberg's)."""

from __future__ import annotations

from typing import Any

import pytest

from datalake.domain.avro_schema import from_avro, infer_field_type
from datalake.engine.arrow_schema import avro_to_schema
from datalake.engine.splits import detect_format


def ts(**extra: Any) -> dict[str, Any]:
    return {"type": "long", "logicalType": "timestamp-micros", **extra}


@pytest.mark.parametrize(
    ("avro", "expected"),
    [
        (ts(**{"adjust-to-utc": False}), "timestamp"),
        (ts(**{"adjust-to-utc": True}), "timestamptz"),
        (ts(), "timestamptz"),
        (["null", ts(**{"adjust-to-utc": False})], "timestamp"),
        ({"type": "long", "logicalType": "local-timestamp-micros"}, "timestamp"),
        ({"type": "fixed", "name": "f", "size": 16}, "fixed[16]"),
        ({"type": "fixed", "name": "u", "size": 16, "logicalType": "uuid"}, "uuid"),
        ({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
         "decimal(9,2)"),
        ({"type": "enum", "name": "e", "symbols": ["A"]}, "string"),
        ("bytes", "binary"),
    ],
)
def test_engine_inference_matches_the_domain(avro: Any, expected: str) -> None:
    record = {"type": "record", "name": "r", "fields": [{"name": "c", "type": avro}]}
    assert avro_to_schema(record).fields[0].type == expected
    assert from_avro(record).fields[0].type == expected


@pytest.mark.parametrize(
    "avro",
    [
        {"type": "record", "name": "n", "fields": []},
        {"type": "array", "items": "long"},
        ["null", "long", "string"],
        "null",
    ],
)
def test_types_no_column_holds_are_inferred_as_string(avro: Any) -> None:
    assert infer_field_type(avro, "c") == "string"


def test_inference_keeps_the_files_names_and_numbers_fields() -> None:
    record = {"type": "record", "name": "r", "fields": [
        {"name": "a_x20b", "type": "long", "field-id": 7, "iceberg-field-name": "a b"},
        {"name": "c", "type": "string"},
    ]}
    schema = avro_to_schema(record)
    assert [(f.id, f.name, f.nullable) for f in schema.fields] == [
        (1, "a_x20b", True), (2, "c", True)
    ]


@pytest.mark.parametrize("explicit", ["json", "JSON", "ndjson", "jsonl"])
def test_detect_format_reads_the_aliases_job_creation_accepts(explicit: str) -> None:
    assert detect_format("in/events.dat", explicit) == ("jsonl", None)
    assert detect_format("in/events.dat.gz", explicit) == ("jsonl", "gzip")
