"""Failure modes: changed sources, corrupt input; nothing of a failed split remains."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from datalake.domain.schema import Schema
from datalake.engine.ingest import ingest_split
from datalake.engine.splits import plan_splits
from datalake.engine.store import LocalObjectStore
from datalake.errors import CorruptInput, SourceChanged

from .conftest import ingest_all

SCHEMA = Schema.of([("a", "long"), ("b", "string")])


def _ingest(store, split):
    return ingest_split(split, schema=SCHEMA, partitioning=[], store=store, lake_bucket="lake",
                        table_prefix="t", file_prefix="j-00000", quarantine_prefix="q")


def test_source_changed_before_reading(store):
    store.put_bytes("src", "a.csv", b"a,b\n1,x\n")
    (sp,) = plan_splits(store.list("src", ""), store=store, format=None, options={})
    store.put_bytes("src", "a.csv", b"a,b\n1,x\n2,y\n")
    with pytest.raises(SourceChanged):
        _ingest(store, sp)


class MutatingStore(LocalObjectStore):
    """Rewrites the object the first time it is opened for reading."""

    def open_input(self, bucket, key, *, size=None, etag=None):
        f = super().open_input(bucket, key, size=size, etag=etag)
        path = self._path(bucket, key)
        with open(path, "ab") as g:
            g.write(b"3,z\n")
        os.utime(path, ns=(1, 1))
        return f


def test_source_changed_while_reading(tmp_path):
    store = MutatingStore(tmp_path)
    store.put_bytes("src", "a.csv", b"a,b\n1,x\n")
    (sp,) = plan_splits(store.list("src", ""), store=store, format=None, options={})
    with pytest.raises(SourceChanged):
        _ingest(store, sp)
    assert not list((tmp_path / "lake").rglob("*.parquet")) if (tmp_path / "lake").exists() \
        else True


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(("key", "data"), [
    ("g.parquet", b"PAR1 this is not parquet at all PAR1"),
    ("g.avro", b"Obj\x01\x02\x00garbage-garbage-garbage-garbage"),
    ("g.csv.gz", b"definitely not gzip data"),
    ("g.jsonl", b'{"a": 1}\n{"a": 2, oops\n'),
    ("g.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe,\x01\n\x00\x10,\n"),
    ("g.csv", b"a,b\n1,\xff\xfe\n"),
])
def test_corrupt_input_fails_the_split(store, key, data):
    store.put_bytes("src", key, data)
    with pytest.raises(CorruptInput):
        splits = plan_splits(store.list("src", ""), store=store, format=None, options={})
        for sp in splits:
            _ingest(store, sp)
    assert not list((Path(store.root) / "lake").rglob("*.parquet"))


def test_failed_split_deletes_its_uploaded_files(store):
    # a gzip stream that breaks after a good first part: first files may be uploaded
    good = b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(50_000))
    data = gzip.compress(good)[:-40] + b"\x00" * 40
    store.put_bytes("src", "x.csv.gz", data)
    with pytest.raises(CorruptInput):
        ingest_all(store, "", schema=SCHEMA, options={"batch_size": 1000})
    assert not list((Path(store.root) / "lake").rglob("*.parquet"))
