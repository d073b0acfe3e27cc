"""Planning and split boundaries: no record lost or duplicated, whatever the cut."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datalake.domain.schema import Schema
from datalake.engine.splits import Split, detect_format, plan_splits
from datalake.engine.store import LocalObjectStore
from datalake.errors import InvalidInput

from .conftest import ingest_all, read_back


def test_detect_format():
    assert detect_format("a/b.csv", None) == ("csv", None)
    assert detect_format("a/b.CSV.gz", None) == ("csv", "gzip")
    assert detect_format("b.ndjson", None) == ("jsonl", None)
    assert detect_format("b.json.gz", None) == ("jsonl", "gzip")
    assert detect_format("b.parquet", None) == ("parquet", None)
    assert detect_format("b.avro", None) == ("avro", None)
    assert detect_format("b.data", "json") == ("jsonl", None)
    with pytest.raises(InvalidInput):
        detect_format("b.xlsx", None)
    with pytest.raises(InvalidInput):
        detect_format("b.csv", "excel")


def test_split_json_round_trip():
    s = Split(index=3, bucket="b", key="k.csv", format="csv", size=10, etag="e", start=0,
              end=10, header=["a"], row_groups=(1, 2))
    assert Split.from_json(json.loads(json.dumps(s.to_json()))) == s


ident = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
value = st.text(alphabet='ab ,"xyz\'é1', min_size=0, max_size=12)


def _csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(["id", "v"])
    for i, (v,) in enumerate(rows):
        w.writerow([str(i), v])
    return out.getvalue().encode()


def _jsonl_bytes(rows: list[list[str]]) -> bytes:
    return "".join(json.dumps({"id": i, "v": v}) + "\n" for i, (v,) in enumerate(rows)).encode()


SCHEMA = Schema.of([("id", "long"), ("v", "string")])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(value).map(list), min_size=0, max_size=60),
       split=st.integers(min_value=1, max_value=200), fmt=st.sampled_from(["csv", "jsonl"]))
def test_split_boundaries_lose_and_duplicate_nothing(tmp_path_factory, rows, split, fmt):
    root = tmp_path_factory.mktemp("s")
    store = LocalObjectStore(root)
    data = _csv_bytes(rows) if fmt == "csv" else _jsonl_bytes(rows)
    store.put_bytes("src", f"in/a.{fmt}", data)
    splits = plan_splits(store.list("src", "in/"), store=store, format=None,
                         options={"null_values": []}, split_size_bytes=split)
    if len(data) > split:
        assert len(splits) > 1
    if data:
        assert splits[0].start == 0 and splits[-1].end == len(data)
    assert all(a.end == b.start for a, b in itertools.pairwise(splits))
    results = ingest_all(store, "in/", schema=SCHEMA, options={"null_values": []},
                         split_size=split)
    got = read_back(store, results)
    ids = got.column("id").to_pylist() if got.num_columns else []
    assert sorted(ids) == list(range(len(rows)))  # nothing lost, nothing twice
    vals = dict(zip(ids, got.column("v").to_pylist() if got.num_columns else [], strict=True))
    for i, (v,) in enumerate(rows):
        assert (vals[i] or "") == v
    assert sum(r.records_read for r in results) == len(rows)


def test_quoted_newlines_make_one_split(store):
    rows = [[f'line one\nline "two" {i}'] for i in range(400)]
    data = _csv_bytes(rows)
    store.put_bytes("src", "q/a.csv", data)
    splits = plan_splits(store.list("src", "q/"), store=store, format=None, options={},
                         split_size_bytes=1000)
    assert len(splits) == 1 and splits[0].newlines_in_values
    results = ingest_all(store, "q/", schema=SCHEMA, split_size=1000)
    got = read_back(store, results)
    assert got.num_rows == 400 and got.column("v").to_pylist()[3] == rows[3][0]
    # the option forces it even when the sample shows none
    store.put_bytes("src", "r/a.csv", _csv_bytes([["x"]] * 500))
    splits = plan_splits(store.list("src", "r/"), store=store, format=None,
                         options={"newlines_in_values": True}, split_size_bytes=100)
    assert len(splits) == 1


def test_parquet_splits_by_row_group(store):
    import pyarrow.parquet as pq

    t = pa.table({"id": pa.array(range(1000), pa.int64()), "v": pa.array(["x"] * 1000)})
    buf = io.BytesIO()
    pq.write_table(t, buf, row_group_size=100)
    store.put_bytes("src", "p/a.parquet", buf.getvalue())
    splits = plan_splits(store.list("src", "p/"), store=store, format=None, options={},
                         split_size_bytes=1)
    assert [s.row_groups for s in splits] == [(i,) for i in range(10)]
    assert [s.first_row for s in splits] == list(range(0, 1000, 100))
    results = ingest_all(store, "p/", schema=SCHEMA, split_size=1)
    assert sorted(read_back(store, results).column("id").to_pylist()) == list(range(1000))


def test_avro_splits_by_block(store):
    import fastavro

    schema = {"type": "record", "name": "r",
              "fields": [{"name": "id", "type": "long"}, {"name": "v", "type": "string"}]}
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [{"id": i, "v": "x" * (i % 13)} for i in range(3000)],
                    sync_interval=500, codec="deflate")
    store.put_bytes("src", "a/a.avro", buf.getvalue())
    for size in (1, 97, 1000, 10**9):
        results = ingest_all(store, "a/", schema=SCHEMA, split_size=size, job=f"j{size}")
        ids = read_back(store, results).column("id").to_pylist()
        assert sorted(ids) == list(range(3000)), size


def test_deterministic_keys_on_rerun(store):
    from pathlib import Path

    from datalake.domain.partitioning import PartitionField

    from .conftest import encode, sample_rows

    store.put_bytes("src", "d/a.csv", encode(sample_rows(50), "csv"))
    from .conftest import SCHEMA as S

    parts = [PartitionField(column="d", transform="day")]
    a = ingest_all(store, "d/", schema=S, partitioning=parts, options={"batch_size": 7})
    first = [(f.key, f.checksum) for r in a for f in r.files]
    b = ingest_all(store, "d/", schema=S, partitioning=parts, options={"batch_size": 7})
    assert [(f.key, f.checksum) for r in b for f in r.files] == first
    assert len(first) == len({k for k, _ in first})
    keys = sorted(str(p.relative_to(Path(store.root) / "lake")) for p in
                  (Path(store.root) / "lake").rglob("*.parquet"))
    assert keys == sorted(k for k, _ in first)
