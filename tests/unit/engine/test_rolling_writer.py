"""The rolling Parquet writer the ingest engine and compaction share, and the rewrite."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datalake.domain.compaction import MergeGroup, MergeInput, PartitionRef
from datalake.engine.rewrite import rewrite, split_by_schema
from datalake.engine.store import LocalObjectStore
from datalake.engine.uploads import Uploader
from datalake.engine.writer import RollingWriter, WrittenFile

SCHEMA = pa.schema([("id", pa.int64()), ("s", pa.string())])


def _table(start: int, n: int) -> pa.Table:
    # digests: values that do not compress, so sizes follow the row counts
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                     "s": pa.array([hashlib.sha256(str(i).encode()).hexdigest()
                                    for i in range(start, start + n)])},
                    schema=SCHEMA)


def _writer(store: LocalObjectStore, tmp: Path, files: list[WrittenFile], *, target: int,
            spool: int = 2**20) -> RollingWriter:
    names = iter(range(1000))
    return RollingWriter(
        schema=SCHEMA, uploads=Uploader(store, "lake", concurrency=1),
        next_key=lambda: f"t/p-{next(names):04d}.parquet", files=files,
        partition={"k": "a"}, target=target, compression="zstd", use_dictionary=False,
        tmp_dir=str(tmp), spool_bytes=spool, spool_budget=[0, spool],
    )


def _stored(store: LocalObjectStore, key: str) -> bytes:
    with store.open_input("lake", key) as f:
        return f.read()


@pytest.mark.parametrize("spool", [2**20, 1024])  # in memory, and spilled to a temp file
def test_files_roll_at_the_target_and_are_recorded_with_their_checksums(
    tmp_path: Path, spool: int
) -> None:
    store = LocalObjectStore(tmp_path / "s3")
    files: list[WrittenFile] = []
    w = _writer(store, tmp_path, files, target=20_000, spool=spool)
    for n in range(6):
        w.write_group(_table(n * 1000, 1000))
    w.close_file()

    assert len(files) >= 2 and [f.key for f in files][:2] == ["t/p-0000.parquet",
                                                               "t/p-0001.parquet"]
    assert sum(f.record_count for f in files) == 6000
    assert all(f.partition == {"k": "a"} for f in files)
    for f in files[:-1]:
        assert f.size_bytes >= 20_000
    ids = []
    for f in files:
        data = _stored(store, f.key)
        assert hashlib.sha256(data).hexdigest() == f.checksum and len(data) == f.size_bytes
        pf = pq.ParquetFile(io.BytesIO(data))
        assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
        assert f.row_groups == pf.metadata.num_row_groups
        assert f.column_stats["id"]["min"] == pf.read().column("id").to_pylist()[0]
        ids.extend(pf.read().column("id").to_pylist())
    assert ids == list(range(6000))


def test_a_file_that_may_not_roll_keeps_growing(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "s3")
    files: list[WrittenFile] = []
    w = _writer(store, tmp_path, files, target=1000)
    w.write_group(_table(0, 1000), may_roll=False)
    assert w.is_open and w.size > 1000 and files == []
    w.write_group(_table(1000, 10))
    assert not w.is_open and len(files) == 1 and files[0].row_groups == 2


def test_a_whole_file_and_an_abort(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "s3")
    files: list[WrittenFile] = []
    w = _writer(store, tmp_path, files, target=10**9)
    w.write_whole(_table(0, 10))
    assert [f.record_count for f in files] == [10]
    w.write_group(_table(10, 10))
    w.abort()
    assert not w.is_open and len(files) == 1 and w.size == 0


def _put_parquet(store: LocalObjectStore, key: str, table: pa.Table) -> MergeInput:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data = sink.getvalue()
    store.put_bytes("lake", key, data)
    return MergeInput(key, "lake", key, table.num_rows, len(data),
                      hashlib.sha256(data).hexdigest())


def test_rewrite_merges_inputs_of_one_schema_and_skips_altered_ones(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "s3")
    inputs = [_put_parquet(store, f"t/k=a/in-{n}.parquet", _table(n * 100, 100))
              for n in range(3)]
    other = _put_parquet(store, "t/k=a/in-x.parquet",
                         pa.table({"id": pa.array([1], pa.int32())}))
    altered = MergeInput("bad", "lake", inputs[0].key, 100, inputs[0].size_bytes, "0" * 64)
    group = MergeGroup(PartitionRef("p", "k=a", {"k": "a"}), 1, [*inputs, other, altered])

    merges, corrupt = split_by_schema(group, store)

    assert corrupt == ["bad"]
    assert [[i.key for i in m.inputs] for m in merges] == [[i.key for i in inputs]]
    out = rewrite(merges[0], store, target=2**20, compression="snappy",
                  discard=lambda b, k: pytest.fail("nothing to discard"))
    assert len(out) == 1 and out[0].key.startswith("t/k=a/part-compact-")
    data = _stored(store, out[0].key)
    assert pq.read_table(io.BytesIO(data)).column("id").to_pylist() == list(range(300))


def test_a_failed_rewrite_hands_its_uploads_to_discard(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "s3")
    inputs = [_put_parquet(store, f"t/in-{n}.parquet", _table(n * 100, 100)) for n in range(2)]
    lying = MergeInput(inputs[1].id, "lake", inputs[1].key, 999, inputs[1].size_bytes,
                       inputs[1].checksum)  # the catalog's count differs from the file's
    merges, _ = split_by_schema(MergeGroup(PartitionRef("p", "", {}), 1,
                                           [inputs[0], lying]), store)
    discarded: list[tuple[str, list[str]]] = []
    with pytest.raises(Exception, match="read 200 rows, the catalog says 1099"):
        rewrite(merges[0], store, target=2**20, compression="snappy",
                discard=lambda b, k: discarded.append((b, k)))
    assert len(discarded) == 1 and discarded[0][0] == "lake" and len(discarded[0][1]) == 1


def test_an_ingest_file_spilled_past_its_spool_is_finished(tmp_path: Path) -> None:
    from datalake.engine.writer import PartitionedWriter

    store = LocalObjectStore(tmp_path / "s3")
    w = PartitionedWriter(schema=SCHEMA, store=store, bucket="lake", table_prefix="t",
                          file_prefix="x", spool_bytes=1024, row_group_rows=1000,
                          tmp_dir=str(tmp_path), upload_concurrency=1)
    for n in range(5):
        w.add("k=a", {"k": "a"}, _table(n * 1000, 1000).to_batches()[0])
    files = w.finish()
    assert [(f.key, f.record_count, f.row_groups) for f in files] == [
        ("t/k=a/part-x-0000.parquet", 5000, 5)
    ]
    data = _stored(store, files[0].key)
    assert hashlib.sha256(data).hexdigest() == files[0].checksum
