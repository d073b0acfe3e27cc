"""Every input format x every partition transform, checked against a scalar reference."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datalake.domain.partitioning import NULL_PARTITION, PartitionField
from datalake.engine.transforms import iceberg_hash

from .conftest import EXT, SCHEMA, encode, ingest_all, put, read_back, sample_rows

FORMATS = ["csv", "csv.gz", "jsonl", "jsonl.gz", "parquet", "avro", "avro-deflate"]
try:  # snappy Avro needs cramjam
    import cramjam  # noqa: F401

    FORMATS.append("avro-snappy")
    EXT["avro-snappy"] = ".avro"
except ImportError:  # pragma: no cover
    pass

EPOCH = dt.date(1970, 1, 1)


def _day(v):
    if v is None:
        return None
    d = v.date() if isinstance(v, dt.datetime) else v
    return d.isoformat()


def ref(transform: str, column: str, v):
    """Scalar reference implementation of the partition value (path string)."""
    if v is None:
        return None
    if transform == "identity":
        return str(v)
    if transform == "year":
        return f"{v.year:04d}"
    if transform == "month":
        return f"{v.year:04d}-{v.month:02d}"
    if transform == "day":
        return _day(v)
    if transform == "hour":
        return f"{v.date().isoformat()}-{v.hour:02d}"
    if transform.startswith("bucket"):
        n = int(transform[7:-1])
        return str((iceberg_hash(v, SCHEMA.field(column).type) & 0x7FFFFFFF) % n)
    if transform.startswith("truncate"):
        w = int(transform[9:-1])
        if isinstance(v, str):
            return v[:w]
        return str(v - v % w)
    if transform.startswith("range"):
        return "lt_0" if v < 0 else ("0_to_500" if v < 500 else "ge_500")
    raise AssertionError(transform)


CASES = [
    ("n", "identity"), ("name", "identity"), ("d", "year"), ("ts", "month"), ("d", "day"),
    ("ts", "hour"), ("tstz", "day"), ("id", "bucket[5]"), ("name", "bucket[3]"),
    ("u", "bucket[4]"), ("amount", "bucket[4]"), ("d", "bucket[3]"), ("ts", "bucket[3]"),
    ("id", "truncate[100]"), ("name", "truncate[6]"), ("id", "range[0,500]"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("column", "transform"), CASES, ids=[f"{c}-{t}" for c, t in CASES])
def test_format_by_transform(store, fmt, column, transform):
    rows = sample_rows(60)
    put(store, "in/data" + EXT[fmt], encode(rows, fmt))
    pf = PartitionField(column=column, transform=transform)
    results = ingest_all(store, "in/", partitioning=[pf], options={"batch_size": 16})
    assert sum(r.records_read for r in results) == 60
    assert sum(r.records_written for r in results) == 60
    assert sum(r.records_rejected for r in results) == 0
    by_id = {r["id"]: r for r in rows}
    seen = 0
    for res in results:
        for f in res.files:
            t = pq.read_table(Path(store.root) / "lake" / f.key)
            if f.partition[pf.path_name] is None:
                assert f"/{pf.path_name}={NULL_PARTITION}/" in f.key
            for rec in t.to_pylist():
                src = by_id[rec["id"]]
                assert f.partition[pf.path_name] == ref(transform, column, src[column]), rec
                for k in ("name", "amount", "ts", "d", "u", "n"):
                    assert rec[k] == src[k], (k, rec[k], src[k])
                assert rec["tstz"] == src["tstz"]
                seen += 1
    assert seen == 60


def test_several_fields_combined(store):
    rows = sample_rows(80)
    put(store, "in/x.parquet", encode(rows, "parquet"))
    parts = [PartitionField(column="d", transform="month"),
             PartitionField(column="id", transform="bucket[2]")]
    (res,) = ingest_all(store, "in/", partitioning=parts)
    assert res.records_written == 80
    paths = [f.key.split("/")[2:4] for f in res.files]
    assert all(p[0].startswith("d_month=") and p[1].startswith("id_bucket=") for p in paths)
    assert len({tuple(p) for p in paths}) == len(paths)  # one file per partition
    back = read_back(store, [res])
    assert sorted(back.column("id").to_pylist()) == sorted(r["id"] for r in rows)


def test_written_files_are_healthy(store):
    """Checksums, field ids, stats, row groups >= 64k rows whatever the batch size."""
    import pyarrow as pa

    n = 70_000
    table = pa.table({"id": pa.array(range(n), pa.int64()),
                      "name": pa.array([f"v{i % 97}" for i in range(n)])})
    import io

    buf = io.BytesIO()
    pq.write_table(table, buf)
    put(store, "big/a.parquet", buf.getvalue())
    from datalake.domain.schema import Schema

    schema = Schema.of([("id", "long", False), ("name", "string")])
    (res,) = ingest_all(store, "big/", schema=schema, options={"batch_size": 1000})
    (f,) = res.files
    path = Path(store.root) / "lake" / f.key
    assert f.key == "tables/t/part-job-00000-0000.parquet"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == f.checksum
    assert f.size_bytes == path.stat().st_size
    md = pq.read_metadata(path)
    groups = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sum(groups) == n
    assert all(g >= 65_536 for g in groups[:-1]) and groups[0] >= 65_536  # + remainder
    sch = pq.read_schema(path)
    assert sch.field("id").metadata[b"PARQUET:field_id"] == b"1"
    assert sch.field("name").metadata[b"PARQUET:field_id"] == b"2"
    assert not sch.field("id").nullable
    assert f.column_stats["id"] == {"min": 0, "max": n - 1, "null_count": 0}
    assert f.column_stats["name"]["min"] == "v0"
    import json

    json.dumps(f.column_stats)


def test_target_file_size_rolls_files_and_zstd(store):
    import io

    import pyarrow as pa

    n = 200_000
    table = pa.table({"id": pa.array(range(n), pa.int64())})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    put(store, "big/a.parquet", buf.getvalue())
    from datalake.domain.schema import Schema
    from datalake.engine.ingest import ingest_split
    from datalake.engine.splits import plan_splits

    (sp,) = plan_splits(store.list("src", "big/"), store=store, format=None, options={})
    res = ingest_split(sp, schema=Schema.of([("id", "long")]), partitioning=[], store=store,
                       lake_bucket="lake", table_prefix="t", file_prefix="j-00000",
                       quarantine_prefix="q", compression="zstd",
                       target_file_size_bytes=100_000, options={"batch_size": 50_000})
    assert len(res.files) >= 2
    assert [f.key for f in res.files] == [f"t/part-j-00000-{i:04d}.parquet"
                                          for i in range(len(res.files))]
    md = pq.read_metadata(Path(store.root) / "lake" / res.files[0].key)
    assert md.row_group(0).column(0).compression == "ZSTD"
    assert sum(f.record_count for f in res.files) == n


def test_memory_cap_spills_without_shrinking_row_groups(store):
    """Unsorted input over many partitions, a tiny memory cap: buffers spill to disk and
    come back, so row groups still reach row_group_rows (or the partition's remainder)."""
    import io
    import random

    import pyarrow as pa

    from datalake.domain.schema import Schema

    rnd = random.Random(3)
    n = 20_000
    keys = [rnd.randrange(7) for _ in range(n)]
    table = pa.table({"id": pa.array(range(n), pa.int64()), "k": pa.array(keys, pa.int64())})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    put(store, "spill/a.parquet", buf.getvalue())
    schema = Schema.of([("id", "long"), ("k", "long")])
    (res,) = ingest_all(store, "spill/", schema=schema,
                        partitioning=[PartitionField(column="k")],
                        options={"batch_size": 100, "max_buffered_rows": 500,
                                 "row_group_rows": 1000})
    assert len(res.files) == 7  # one file per partition
    total = 0
    for f in res.files:
        md = pq.read_metadata(Path(store.root) / "lake" / f.key)
        groups = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        assert all(g >= 1000 for g in groups[:-1]), groups
        total += sum(groups)
        ids = pq.read_table(Path(store.root) / "lake" / f.key).column("id").to_pylist()
        assert all(keys[i] == int(f.partition["k"]) for i in ids)
    assert total == n
    assert not list(Path(store.root).rglob("*.arrows"))


def test_column_stats_of_one_row_group_equal_those_merged_from_several():
    import io

    from datalake.engine.writer import column_stats

    n = 3000
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "name": pa.array([None if i % 7 == 0 else f"v{i:05d}" for i in range(n)]),
        "ts": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i)
                        for i in range(n)], pa.timestamp("us", tz="UTC")),
        "empty": pa.array([None] * n, pa.float64()),
    })

    def stats(row_group_size: int) -> dict:
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size)
        md = pq.read_metadata(io.BytesIO(buf.getvalue()))
        assert md.num_row_groups == -(-n // row_group_size)
        return column_stats(md)

    one = stats(n)
    assert one == stats(700)
    assert one["id"] == {"min": 0, "max": n - 1, "null_count": 0}
    assert one["name"] == {"min": "v00001", "max": f"v{n - 1:05d}", "null_count": n // 7 + 1}
    assert one["ts"]["min"].startswith("2024-01-01T00:00:00")
    assert one["empty"] == {"min": None, "max": None, "null_count": n}
