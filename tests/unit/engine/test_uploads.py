"""Concurrent uploads: overlapped, bounded, complete before a split reports its files, and
nothing left behind (or landing late) when a put fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datalake.domain.partitioning import PartitionField
from datalake.domain.schema import Schema
from datalake.engine.ingest import ingest_split
from datalake.engine.splits import plan_splits
from datalake.engine.store import LocalObjectStore
from datalake.engine.uploads import Uploader

SCHEMA = Schema.of([("id", "long"), ("k", "int")])
PARTS = 40


class SlowStore(LocalObjectStore):
    """Each put takes ``delay`` seconds (a network round trip); counts overlap; optionally
    fails the ``fail_at``-th put."""

    def __init__(self, root: Path, delay: float = 0.02, fail_at: int | None = None) -> None:
        super().__init__(root)
        self.delay = delay
        self.fail_at = fail_at
        self.lock = threading.Lock()
        self.active = self.max_active = self.puts = 0
        self.stored: list[str] = []

    def put_bytes(self, bucket: str, key: str, data: object) -> None:
        with self.lock:
            self.puts += 1
            n = self.puts
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            if self.fail_at is not None and n == self.fail_at:
                raise OSError("connection reset by peer")
            super().put_bytes(bucket, key, data)
            if bucket == "lake":
                with self.lock:
                    self.stored.append(key)
        finally:
            with self.lock:
                self.active -= 1


def _csv(n: int = 2000) -> bytes:
    return ("id,k\n" + "".join(f"{i},{i % PARTS}\n" for i in range(n))).encode()


def _ingest(store: LocalObjectStore, **options: object):
    LocalObjectStore.put_bytes(store, "src", "in.csv", _csv())
    (sp,) = plan_splits(store.list("src", ""), store=store, format=None, options={})
    return ingest_split(sp, schema=SCHEMA, partitioning=[PartitionField(column="k")],
                        store=store, lake_bucket="lake", table_prefix="t",
                        file_prefix="j-00000", quarantine_prefix="q", options=dict(options))


def test_puts_overlap_and_all_land_before_the_split_returns(tmp_path: Path) -> None:
    store = SlowStore(tmp_path)
    res = _ingest(store)
    assert len(res.files) == PARTS
    assert store.max_active > 1  # latency overlapped, not paid one file at a time
    assert sorted(store.stored) == sorted(f.key for f in res.files)
    total = 0
    for f in res.files:  # every reported file is complete and readable
        total += pq.read_metadata(tmp_path / "lake" / f.key).num_rows
    assert total == res.records_written == 2000


def test_concurrency_one_puts_one_at_a_time(tmp_path: Path) -> None:
    store = SlowStore(tmp_path, delay=0.001)
    res = _ingest(store, upload_concurrency=1)
    assert store.max_active == 1
    assert len(res.files) == PARTS


def test_a_failed_put_fails_the_split_and_leaves_nothing(tmp_path: Path) -> None:
    store = SlowStore(tmp_path, fail_at=7)
    with pytest.raises(OSError, match="connection reset"):
        _ingest(store)
    assert store.active == 0  # every put in flight ended before the clean-up
    assert not list((tmp_path / "lake").rglob("*.parquet"))


def test_inflight_bytes_are_bounded(tmp_path: Path) -> None:
    gate = threading.Event()
    store = SlowStore(tmp_path, delay=0)
    real = store.put_bytes

    def blocked(bucket: str, key: str, data: object) -> None:
        gate.wait(5)
        real(bucket, key, data)

    store.put_bytes = blocked  # type: ignore[method-assign]
    up = Uploader(store, "lake", concurrency=4, max_inflight_bytes=250)
    up.put_bytes("a", b"x" * 100, 100)
    up.put_bytes("b", b"x" * 100, 100)
    done = threading.Event()

    def third() -> None:
        up.put_bytes("c", b"x" * 100, 100)  # 300 > 250: waits for "a"
        done.set()

    threading.Thread(target=third).start()
    assert not done.wait(0.2)
    gate.set()
    assert done.wait(5)
    up.wait()
    up.close()
    assert sorted(p.name for p in (tmp_path / "lake").iterdir()) == ["a", "b", "c"]


def test_put_file_cleans_up_even_when_the_put_fails(tmp_path: Path) -> None:
    class Failing(LocalObjectStore):
        def put_file(self, bucket: str, key: str, path: str) -> None:
            raise OSError("boom")

    spill = tmp_path / "spill.parquet"
    spill.write_bytes(b"data")
    up = Uploader(Failing(tmp_path), "lake", concurrency=2)
    up.put_file("k", str(spill), 4, cleanup=spill.unlink)
    with pytest.raises(OSError, match="boom"):
        up.wait()
    up.close()
    assert not spill.exists()
