"""Conformance: casts, rejections with reasons, counts, schema policies."""

from __future__ import annotations

import datetime as dt
import decimal
import io
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pytest

from datalake.domain.partitioning import PartitionField
from datalake.domain.schema import Schema
from datalake.engine.arrow_schema import infer_schema, to_arrow_schema, to_arrow_type
from datalake.engine.conform import convert
from datalake.engine.store import LocalObjectStore
from datalake.errors import SchemaMismatch

from .conftest import ingest_all, put, quarantine_lines, read_back

TYPED = Schema.of([("id", "int", False), ("price", "decimal(6,2)"), ("day", "date"),
                   ("at", "timestamp"), ("atz", "timestamptz"), ("ok", "boolean"),
                   ("u", "uuid"), ("t", "time"), ("x", "double")])

CSV = (
    "id,price,day,at,atz,ok,u,t,x\n"
    "1,14.20,2020-01-02,2020-01-02 03:04:05,2020-01-02T03:04:05Z,true,"
    "F79C3E09-677C-4BBD-A479-3F349CB785E7,12:30:00,1.5\n"
    "2,abc,2020-01-02,2020-01-02 03:04:05,2020-01-02 03:04:05,false,,,NA\n"        # price
    "3,1.5,2020-02-30,2020-01-02,2020-01-02T03:04:05+01:00,1,,,2\n"                # day
    ",1.5,2020-01-01,,,,,,\n"                                                      # id null
    "99999999999,1,2020-01-01,,,,,,\n"                                             # overflow
    "6,1.234,2020-01-01,,,,,,\n"                                                   # scale
    "7,1,2020-01-01,2020-01-02T03:04:05+02:00,,yes,,,\n"                           # ok
    "8,1,2020-01-01,,,,not-a-uuid,,\n"                                             # uuid
    "9,1,2020-01-01,,,,,25:00:00,\n"                                               # time
    "10,\"2.5\",2020-01-01,,,,,,1e3\n"
)


def test_rejections_counts_and_reasons(store):
    put(store, "in/a.csv", CSV.encode())
    (res,) = ingest_all(store, "in/", schema=TYPED,
                        partitioning=[PartitionField(column="day", transform="month")])
    assert res.records_read == 10
    assert res.records_read == res.records_written + res.records_rejected
    lines = quarantine_lines(store, [res])
    assert res.quarantine_key == "quarantine/t/job-00000.jsonl"
    by_row = {ln["row"]: ln for ln in lines}
    assert set(by_row) == {1, 2, 3, 4, 5, 6, 7, 8}
    assert by_row[1]["column"] == "price" and by_row[1]["value"] == "abc"
    assert by_row[2]["column"] == "day" and by_row[2]["value"] == "2020-02-30"
    assert by_row[3]["column"] == "id" and "required" in by_row[3]["error"]
    assert by_row[4]["column"] == "id" and by_row[4]["value"] == "99999999999"
    assert by_row[5]["column"] == "price"
    assert by_row[6]["column"] == "ok"
    assert by_row[7]["column"] == "u"
    assert by_row[8]["column"] == "t"
    for ln in lines:
        assert ln["source"] == "s3://src/in/a.csv"
        assert ln["error"]
        assert isinstance(ln["record"], dict) and "id" in ln["record"]
    back = read_back(store, [res]).sort_by("id")
    assert back.column("id").to_pylist() == [1, 10]
    assert back.column("price").to_pylist() == [decimal.Decimal("14.20"), decimal.Decimal("2.50")]
    assert back.column("u").to_pylist()[0] == "f79c3e09-677c-4bbd-a479-3f349cb785e7"
    assert back.column("t").to_pylist()[0] == dt.time(12, 30)
    assert back.column("atz").to_pylist()[0] == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert back.column("x").to_pylist() == [1.5, 1000.0]


def test_timestamp_offsets_and_naive_values():
    naive, bad = convert(pa.array(["2020-01-02 03:04:05", "2020-01-02T03:04:05+01:00", "x"]),
                         to_arrow_type("timestamp"))
    assert list(bad) == [2]
    assert naive.to_pylist()[:2] == [dt.datetime(2020, 1, 2, 3, 4, 5),
                                     dt.datetime(2020, 1, 2, 2, 4, 5)]
    aware, bad = convert(pa.array(["2020-01-02 03:04:05", "2020-01-02T03:04:05-01:00"]),
                         to_arrow_type("timestamptz"))
    assert not bad
    assert [v.hour for v in aware.to_pylist()] == [3, 4]


def test_jsonl_type_conflicts_are_rejected_not_fatal(store):
    lines = ['{"id": 1, "x": 1.5}', '{"id": "two", "x": 2}', '{"id": 3, "x": "bad"}',
             '{"ID": 4, "extra": {"a": 1}}']
    put(store, "in/a.jsonl", ("\n".join(lines) + "\n").encode())
    schema = Schema.of([("id", "long"), ("x", "double")])
    (res,) = ingest_all(store, "in/", schema=schema)
    assert (res.records_read, res.records_written, res.records_rejected) == (4, 2, 2)
    assert res.discarded_columns == ["extra"]
    q = {ln["row"]: ln for ln in quarantine_lines(store, [res])}
    assert q[1]["column"] == "id" and q[1]["value"] == "two"
    assert q[2]["column"] == "x"
    assert sorted(read_back(store, [res]).column("id").to_pylist()) == [1, 4]


def test_csv_malformed_rows_rejected(store):
    put(store, "in/a.csv", b"a,b\n1,2\n3,4,5\n6,7\n")
    schema = Schema.of([("a", "long"), ("b", "long")])
    (res,) = ingest_all(store, "in/", schema=schema)
    assert (res.records_read, res.records_written, res.records_rejected) == (3, 2, 1)
    (ln,) = quarantine_lines(store, [res])
    assert ln["value"] == "3,4,5" and "fields" in ln["error"]


def test_schema_policies(store):
    put(store, "in/a.csv", b"ID,name,extra\n1,x,e\n")
    schema = Schema.of([("id", "long"), ("name", "string"), ("missing", "double")])
    with pytest.raises(SchemaMismatch, match="extra"):
        ingest_all(store, "in/", schema=schema, policy="freeze")
    (res,) = ingest_all(store, "in/", schema=schema, policy="discard_columns")
    assert res.discarded_columns == ["extra"]
    assert res.source_columns == ["ID", "name", "extra"]
    back = read_back(store, [res])
    assert back.to_pylist() == [{"id": 1, "name": "x", "missing": None}]
    required = Schema.of([("id", "long"), ("name", "string"), ("extra", "string"),
                          ("must", "long", False)])
    with pytest.raises(SchemaMismatch, match="must"):
        ingest_all(store, "in/", schema=required, policy="freeze")
    (res,) = ingest_all(store, "in/", schema=required, policy="evolve", job="j2")
    assert res.records_rejected == 1 and res.records_written == 0


def test_csv_options(store):
    put(store, "in/a.csv", b"# comment line\n1;'a;b';-\n2;'c';7\n")
    schema = Schema.of([("id", "long"), ("s", "string"), ("v", "long")])
    opts = {"delimiter": ";", "quote_char": "'", "null_values": ["-"], "header": False,
            "skip_rows": 1}
    (res,) = ingest_all(store, "in/", schema=schema, options=opts)
    assert read_back(store, [res]).to_pylist() == [{"id": 1, "s": "a;b", "v": None},
                                                   {"id": 2, "s": "c", "v": 7}]


def test_arrow_schema_round_trip():
    schema = Schema.of([("a", "int"), ("b", "long"), ("c", "decimal(9,3)"), ("d", "date"),
                        ("e", "timestamp"), ("f", "timestamptz"), ("g", "string"),
                        ("h", "boolean"), ("i", "binary"), ("j", "float"), ("k", "double"),
                        ("l", "time")])
    arrow = to_arrow_schema(schema)
    assert arrow.field("f").type == pa.timestamp("us", tz="UTC")
    assert arrow.field("c").metadata[b"PARQUET:field_id"] == b"3"
    assert [f.type for f in infer_schema(arrow).fields] == [f.type for f in schema.fields]
    assert to_arrow_type("uuid") == pa.string()


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl", "parquet", "avro"])
def test_sample_schema(store, fmt):
    from datalake.engine.arrow_schema import sample_schema
    from datalake.engine.splits import plan_splits

    from .conftest import EXT, encode, sample_rows

    put(store, "s/a" + EXT[fmt], encode(sample_rows(20), fmt))
    (sp,) = plan_splits(store.list("src", "s/"), store=store, format=None, options={})
    schema = sample_schema(sp, store=store, options={})
    types = {f.name: f.type for f in schema.fields}
    assert types["id"] == "long" and types["name"] == "string"
    assert types["tstz"] in ({"timestamptz"} if fmt != "jsonl" else {"timestamp", "timestamptz"})
    if fmt in ("parquet", "avro"):
        assert types["amount"] == "decimal(10,2)" and types["d"] == "date"
        assert types["ts"] == "timestamp"
    assert [f.id for f in schema.fields] == list(range(1, len(schema.fields) + 1))



def test_freeze_fails_a_file_missing_an_optional_column(store):
    put(store, "in/a.csv", b"id\n1\n")
    schema = Schema.of([("id", "long"), ("name", "string")])
    with pytest.raises(SchemaMismatch, match="missing from the source: name"):
        ingest_all(store, "in/", schema=schema, policy="freeze")
    (res,) = ingest_all(store, "in/", schema=schema, policy="evolve", job="j2")
    assert read_back(store, [res]).to_pylist() == [{"id": 1, "name": None}]


class CountingStore(LocalObjectStore):
    """Counts the source bytes the engine actually reads (opened streams and ranges)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_bytes = 0

    def open_input(self, bucket: str, key: str, **kw: Any) -> BinaryIO:
        f = super().open_input(bucket, key, **kw)
        store = self

        class Counted(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def seekable(self) -> bool:
                return f.seekable()

            def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
                return f.seek(offset, whence)

            def tell(self) -> int:
                return f.tell()

            def readinto(self, b: Any) -> int:
                data = f.read(len(b))
                b[: len(data)] = data
                if bucket == "src":
                    store.read_bytes += len(data)
                return len(data)

        return io.BufferedReader(Counted())


@pytest.mark.parametrize("split_size", [128 * 2**20, 20_000], ids=["whole", "split"])
def test_a_csv_with_bad_values_in_several_columns_is_read_once(
    tmp_path: Path, split_size: int
) -> None:
    schema = Schema.of([("id", "long"), ("a", "int"), ("b", "double"), ("c", "date"),
                        ("d", "boolean"), ("e", "long")])
    rows = [f"{i},{i % 100},{i / 4},2020-01-{i % 28 + 1:02d},{'true' if i % 2 else 'false'},{i}"
            for i in range(5000)]
    clean = ("id,a,b,c,d,e\n" + "\n".join(rows) + "\n").encode()
    # one bad value (as wide as the good one) in each of five columns, in different chunks
    bad = {700: 1, 1900: 2, 2600: 3, 3300: 4, 4800: 5}
    for row, col in bad.items():
        fields = rows[row].split(",")
        fields[col] = "?" * len(fields[col])
        rows[row] = ",".join(fields)
    dirty = ("id,a,b,c,d,e\n" + "\n".join(rows) + "\n").encode()
    assert len(dirty) == len(clean)

    read: dict[str, tuple[int, int]] = {}
    for name, data in (("clean", clean), ("dirty", dirty)):
        (tmp_path / name / "src").mkdir(parents=True)
        (tmp_path / name / "lake").mkdir()
        store = CountingStore(tmp_path / name)
        put(store, "in/x.csv", data)
        results = ingest_all(store, "in/", schema=schema, split_size=split_size,
                             options={"block_size": 16_384})
        assert sum(r.records_read for r in results) == 5000
        read[name] = (sum(r.bytes_read for r in results), store.read_bytes)
    assert sum(r.records_rejected for r in results) == 5
    rejected = quarantine_lines(store, results)
    assert sorted(r["column"] for r in rejected) == ["a", "b", "c", "d", "e"]
    # Bad values cost no extra reads: the dirty file reads exactly what the clean one does.
    assert read["dirty"] == read["clean"]
    if len(results) == 1:  # one split: every byte once, rows counted from the first record
        assert read["dirty"] == (len(dirty), len(dirty))
        assert sorted(r["row"] for r in rejected) == sorted(bad)


@pytest.mark.parametrize("escape", [False, True], ids=["doubled-quotes", "escape-char"])
def test_records_with_quoted_newlines_are_never_cut_between_chunks(
    store: LocalObjectStore, escape: bool
) -> None:
    schema = Schema.of([("id", "long"), ("v", "string"), ("n", "int")])
    quote = '\\"' if escape else '""'
    lines = [f'{i},"line one\nline {quote}two{quote} {i}\n",{"?" if i == 150 else i}'
             for i in range(300)]
    put(store, "q/a.csv", ("id,v,n\n" + "\n".join(lines) + "\n").encode())
    options = {"newlines_in_values": True, "block_size": 64,
               **({"escape_char": "\\"} if escape else {})}
    results = ingest_all(store, "q/", schema=schema, options=options)
    got = read_back(store, results).sort_by("id")
    assert got.num_rows == 299 and results[0].records_rejected == 1
    assert got.column("v").to_pylist()[7] == 'line one\nline "two" 7\n'
    assert [r["row"] for r in quarantine_lines(store, results)] == [150]


@pytest.mark.parametrize("first", ['1,5" pipe', '1,"C:\\\\"'],
                         ids=["stray-quote", "escaped-escape"])
def test_a_quote_that_opens_no_value_never_cuts_a_multiline_record(
    store: LocalObjectStore, first: str
) -> None:
    """A quote inside an unquoted field opens nothing, and an escaped escape before a
    closing quote closes the value: only pyarrow's parser knows, so records that span
    lines are never cut by a count of quotes (a review found rows cut and made-up rejects)."""
    schema = Schema.of([("id", "long"), ("v", "string")])
    rows = [first] + [f'{i},"a\nb {i}"' for i in range(2, 40)]
    put(store, "q/a.csv", ("id,v\n" + "\n".join(rows) + "\n").encode())
    options = {"newlines_in_values": True, "block_size": 64,
               **({"escape_char": "\\"} if "\\" in first else {})}
    results = ingest_all(store, "q/", schema=schema, options=options)
    got = read_back(store, results).sort_by("id")
    assert (sum(r.records_read for r in results), got.num_rows) == (39, 39)
    assert sum(r.records_rejected for r in results) == 0
    assert got.column("v").to_pylist()[1:] == [f"a\nb {i}" for i in range(2, 40)]
