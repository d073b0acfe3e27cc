"""Plan's sample of a source object: what it types, what it skips, what it refuses."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datalake.domain.schema import Schema
from datalake.engine.arrow_schema import sample_schema
from datalake.engine.ingest import ingest_split
from datalake.engine.splits import plan_splits
from datalake.engine.store import LocalObjectStore
from datalake.errors import CorruptInput


def types_of(store: LocalObjectStore, key: str, fmt: str | None = None) -> dict[str, str]:
    (split,) = plan_splits(store.list("src", key), store=store, format=fmt, options={})
    return {f.name: f.type for f in sample_schema(split, store=store).fields}


def printable(text: str) -> bool:
    return all(ch.isprintable() and ch != "\ufffd" for ch in text)


def test_the_sampler_skips_a_csv_row_with_the_wrong_field_count(store: LocalObjectStore) -> None:
    store.put_bytes("src", "s.csv", b"a,b,c\n1,x,2.5\n7\n2,y,3.5,9\n3,z,4.5\n")
    assert types_of(store, "s.csv") == {"a": "long", "b": "string", "c": "double"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["2013-01-01T10:00:00.000Z", "2013-01-02T11:00:00.500Z"], "timestamp"),
        (["2013-01-01T10:00:00.123456Z", "2013-01-01T10:00:00.250+02:00"], "timestamp"),
        (["2013-01-01T10:00:00.123-05:00", "2013-01-01 10:00:00.1"], "timestamp"),
        (["2013-01-01T10:00:00Z", "2013-01-01T10:00:00+01:00"], "timestamp"),
        (["2013-01-01T10:00:00.123456789Z"], "string"),  # nanoseconds do not fit
        (["2013-01-01T10:00:00.000Z", "soon"], "string"),
    ],
)
def test_json_lines_iso_timestamps_infer_as_timestamp(
    store: LocalObjectStore, values: list[str], expected: str
) -> None:
    rows = [{"id": i, "t": v} for i, v in enumerate(values)] + [{"id": 99, "t": None}]
    store.put_bytes("src", "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert types_of(store, "t.jsonl")["t"] == expected


def parquet_bytes() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(2000)), "s": [f"v{i}" for i in range(2000)]}), sink)
    return sink.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_binary_read_as_text_is_refused_with_a_printable_message(
    store: LocalObjectStore, fmt: str
) -> None:
    store.put_bytes("src", "f.parquet", parquet_bytes())
    with pytest.raises(CorruptInput) as raised:
        types_of(store, "f.parquet", fmt)
    message = raised.value.message
    assert printable(message) and "looks like a Parquet file" in message
    assert "starting PAR1" in message and len(message) < 300


# pyarrow cannot hand a row that is no UTF-8 to the reader's handler: it says so, unraisably.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_csv_error_quotes_the_binary_row_escaped(store: LocalObjectStore) -> None:
    # Past the 1 MiB Plan looks at: bytes that are no UTF-8, with a terminal escape.
    bad = b"2,\x8b\x1b[31m\xff,\x07zz\n"
    store.put_bytes("src", "x.csv", b"a,b\n" + b"1,x\n" * 300_000 + bad + b"4,y\n")
    (split,) = plan_splits(store.list("src", "x.csv"), store=store, format=None, options={})
    with pytest.raises(CorruptInput) as raised:
        ingest_split(split, schema=Schema.of([("a", "long"), ("b", "string")]),
                     partitioning=[], store=store, lake_bucket="lake", table_prefix="t",
                     file_prefix="j-00000", quarantine_prefix="q")
    message = raised.value.message
    assert "unreadable CSV" in message and printable(message), message
    assert "\\x1b[31m" in message, "the row is quoted, escaped"
