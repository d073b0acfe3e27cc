"""Small objects share a batch: packing, and one writer across a batch's splits."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datalake.domain.partitioning import PartitionField
from datalake.domain.schema import Schema
from datalake.engine.ingest import ingest_splits
from datalake.engine.splits import Split, batch_from_json, batch_to_json, pack_splits, plan_splits
from datalake.engine.store import LocalObjectStore
from datalake.errors import SourceChanged

SCHEMA = Schema.of([("id", "long"), ("day", "int"), ("v", "int")])


def _split(i: int, size: int, start: int = 0, end: int | None = None) -> Split:
    return Split(index=i, bucket="b", key=f"k{i}", format="csv", size=size, etag="e",
                 start=start, end=size if end is None else end)


def test_small_objects_are_packed_up_to_the_split_size_in_order() -> None:
    splits = [_split(i, 100) for i in range(25)]
    groups = pack_splits(splits, split_size_bytes=1000)
    assert [len(g) for g in groups] == [10, 10, 5]
    assert [sp.index for g in groups for sp in g] == list(range(25))  # order kept, none lost


def test_a_big_objects_splits_stay_one_to_a_batch() -> None:
    big = [_split(i, 3000, start=i * 1000, end=(i + 1) * 1000) for i in range(3)]
    small = [_split(3, 10), _split(4, 10)]
    groups = pack_splits([*big, *small], split_size_bytes=1000)
    assert [[sp.index for sp in g] for g in groups] == [[0], [1], [2], [3, 4]]
    oversized = pack_splits([_split(0, 5000), _split(1, 10)], split_size_bytes=1000)
    assert [[sp.index for sp in g] for g in oversized] == [[0], [1]]


def test_splits_per_batch_are_capped() -> None:
    groups = pack_splits([_split(i, 1) for i in range(600)], split_size_bytes=10**9,
                         max_splits=256)
    assert [len(g) for g in groups] == [256, 256, 88]


def test_batch_json_round_trips_and_reads_the_single_split_form() -> None:
    one, two = _split(0, 10), _split(1, 20)
    assert batch_from_json(batch_to_json([one])) == [one]
    assert batch_to_json([one]) == one.to_json()  # batches stored before packing still read
    assert batch_from_json(batch_to_json([one, two])) == [one, two]


def _put_objects(store: LocalObjectStore, n: int, rows: int) -> None:
    for k in range(n):
        body = "id,day,v\n" + "".join(
            f"{k * rows + i},{i % 3},{'oops' if (k, i) == (4, 2) else i}\n" for i in range(rows))
        store.put_bytes("src", f"in/{k:03d}.csv", body.encode())


def _ingest(store: LocalObjectStore, splits: list[Split]):
    return ingest_splits(splits, schema=SCHEMA, partitioning=[PartitionField(column="day")],
                         store=store, lake_bucket="lake", table_prefix="t",
                         file_prefix="j-00000", quarantine_prefix="q")


def test_one_writer_across_a_batch_writes_one_file_per_partition(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    _put_objects(store, 40, 30)
    splits = plan_splits(store.list("src", "in/"), store=store, format=None, options={})
    (group,) = pack_splits(splits, split_size_bytes=2**20)
    res = _ingest(store, group)
    assert len(group) == 40
    assert len(res.files) == 3  # one per day partition, not one per object and partition
    assert res.records_read == 1200 and res.records_rejected == 1
    assert res.records_written == 1199
    ids = []
    for f in res.files:
        ids.extend(pq.read_table(tmp_path / "lake" / f.key)["id"].to_pylist())
    assert sorted(ids) == sorted(set(range(1200)) - {4 * 30 + 2})  # nothing lost or doubled
    (line,) = [json.loads(x) for x in (tmp_path / "lake" / res.quarantine_key).read_text()
               .splitlines()]
    assert line["source"] == "s3://src/in/004.csv" and line["row"] == 2  # its own object


def test_a_changed_object_fails_the_whole_batch_and_leaves_nothing(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    _put_objects(store, 5, 10)
    splits = plan_splits(store.list("src", "in/"), store=store, format=None, options={})
    store.put_bytes("src", "in/003.csv", b"id,day,v\n1,1,1\n")
    with pytest.raises(SourceChanged, match=r"003\.csv"):
        _ingest(store, splits)
    assert not list(tmp_path.glob("lake/**/*.parquet"))
