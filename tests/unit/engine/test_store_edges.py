"""The storage edges say what they do: a planned size/ETag reaches every read and is
honoured by every store, and S3's per-key delete errors are raised, not dropped."""

from __future__ import annotations

import io
from typing import Any, BinaryIO

import boto3
import fastavro
import pytest
from moto import mock_aws

from datalake.aws.s3 import S3ObjectStore
from datalake.domain.schema import Schema
from datalake.engine.avro import read_header
from datalake.engine.ingest import ingest_split
from datalake.engine.splits import plan_splits
from datalake.engine.store import LocalObjectStore, ObjectStore
from datalake.engine.streams import open_at
from datalake.errors import ObjectsNotDeleted, SourceChanged

SCHEMA = Schema.of([("a", "long"), ("b", "string")])


def test_the_local_store_refuses_a_read_of_another_version(tmp_path: Any) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("src", "a.csv", b"a,b\n1,x\n")
    old = store.head("src", "a.csv")
    with store.open_input("src", "a.csv", size=old.size, etag=old.etag) as f:
        assert f.read() == b"a,b\n1,x\n"
    assert store.get_range("src", "a.csv", 0, 3, etag=old.etag) == b"a,b"
    store.put_bytes("src", "a.csv", b"a,b\n1,x\n2,y\n")
    with pytest.raises(SourceChanged):
        store.open_input("src", "a.csv", etag=old.etag)
    with pytest.raises(SourceChanged):
        store.open_input("src", "a.csv", size=old.size)
    with pytest.raises(SourceChanged):
        store.get_range("src", "a.csv", 0, 3, etag=old.etag)
    new = store.head("src", "a.csv")
    assert store.get_range("src", "a.csv", 0, 3, etag=f'"{new.etag}"') == b"a,b"  # S3 quotes


class Versioned(LocalObjectStore):
    """Serves the first version of every object to reads that name no ETag (a store
    that ignored the ETag would read that one), the current one to reads that do."""

    def __init__(self, root: Any) -> None:
        super().__init__(root)
        self.first: dict[tuple[str, str], bytes] = {}
        self.etags: list[str | None] = []

    def put_bytes(self, bucket: str, key: str, data: Any) -> None:
        self.first.setdefault((bucket, key), bytes(data))
        super().put_bytes(bucket, key, data)

    def get_range(self, bucket: str, key: str, start: int, end: int | None, *,
                  etag: str | None = None) -> bytes:
        self.etags.append(etag)
        if etag is None:
            data = self.first[(bucket, key)]
            return data[start:] if end is None else data[start:end]
        return super().get_range(bucket, key, start, end, etag=etag)

    def open_input(self, bucket: str, key: str, *, size: int | None = None,
                   etag: str | None = None) -> BinaryIO:
        self.etags.append(etag)
        if etag is None:
            return io.BytesIO(self.first[(bucket, key)])
        return super().open_input(bucket, key, size=size, etag=etag)


def _avro(rows: list[dict[str, Any]], doc: str) -> bytes:
    schema = {"type": "record", "name": "r", "doc": doc,
              "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": "string"}]}
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), rows)
    return buf.getvalue()


def test_an_avro_header_is_read_from_the_planned_version(tmp_path: Any) -> None:
    store = Versioned(tmp_path)
    store.put_bytes("src", "x.avro", _avro([{"a": 1, "b": "x"}], "first"))
    store.put_bytes("src", "x.avro", _avro([{"a": 2, "b": "y"}], "second"))
    info = store.head("src", "x.avro")
    header = read_header(store, "src", "x.avro", info.size, info.etag)
    assert header.schema["doc"] == "second"
    assert store.etags == [info.etag]
    store.put_bytes("src", "x.avro", _avro([{"a": 3, "b": "z"}], "third"))
    with pytest.raises(SourceChanged):
        read_header(store, "src", "x.avro", info.size, info.etag)


def test_every_read_of_an_ingest_names_the_planned_etag(tmp_path: Any) -> None:
    store = Versioned(tmp_path)
    store.put_bytes("src", "a.csv", b"a,b\n1,x\n")
    store.put_bytes("src", "a.csv", b"a,b\n1,x\n2,y\n")
    (split,) = plan_splits(store.list("src", ""), store=store, format=None, options={})
    result = ingest_split(split, schema=SCHEMA, partitioning=[], store=store,
                          lake_bucket="lake", table_prefix="t", file_prefix="j-00000",
                          quarantine_prefix="q")
    assert result.records_written == 2  # the current version, not the first one
    assert store.etags and set(store.etags) == {split.etag}


class KeywordlessStore(LocalObjectStore):
    """A store that does not take the protocol's size/etag (as a stale test double)."""

    def open_input(self, bucket: str, key: str) -> BinaryIO:  # type: ignore[override]
        return super().open_input(bucket, key)


def test_a_store_without_size_and_etag_fails_loudly_instead_of_reading_unconditionally(
    tmp_path: Any,
) -> None:
    store: ObjectStore = KeywordlessStore(tmp_path)
    store.put_bytes("src", "a.csv", b"a\n")
    info = store.head("src", "a.csv")
    with pytest.raises(TypeError):
        open_at(store, "src", "a.csv", size=info.size, etag=info.etag)


class RefusingClient:
    """``DeleteObjects`` answers 200 and lists the keys it did not delete."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.calls = 0

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        keys = [o["Key"] for o in Delete["Objects"]]
        return {"Errors": [{"Key": k, "Code": "AccessDenied", "Message": "Access Denied"}
                           for k in keys if k in self.refuse]}


def test_s3_per_key_delete_errors_are_raised_after_every_chunk() -> None:
    client = RefusingClient({"k-3", "k-1500"})
    store = S3ObjectStore(client)
    keys = [f"k-{i}" for i in range(2000)]
    with pytest.raises(ObjectsNotDeleted) as info:
        store.delete("lake", keys)
    assert client.calls == 2
    assert {d["key"] for d in info.value.details} == {"k-3", "k-1500"}
    assert info.value.details[0]["code"] == "AccessDenied"
    S3ObjectStore(RefusingClient(set())).delete("lake", keys)  # nothing refused: no error


def test_s3_reads_given_a_stale_etag_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="src")
        s3 = S3ObjectStore(client)
        s3.put_bytes("src", "h.avro", _avro([{"a": 1, "b": "x"}], "first"))
        old = s3.head("src", "h.avro")
        s3.put_bytes("src", "h.avro", _avro([{"a": 1, "b": "x"}], "second"))
        with pytest.raises(SourceChanged):
            read_header(s3, "src", "h.avro", old.size, old.etag)
