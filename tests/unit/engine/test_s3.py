"""S3ObjectStore against moto: the store operations and one ingest end to end."""

from __future__ import annotations

import io

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from datalake.aws.s3 import S3ObjectStore
from datalake.domain.partitioning import PartitionField
from datalake.domain.schema import Schema
from datalake.engine.ingest import ingest_split
from datalake.engine.splits import plan_splits
from datalake.errors import NotFound, SourceChanged


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="src")
        client.create_bucket(Bucket="lake")
        yield S3ObjectStore(client)


def test_store_operations(s3):
    s3.put_bytes("src", "a/b.txt", b"0123456789")
    info = s3.head("src", "a/b.txt")
    assert info.size == 10 and info.etag
    assert [o.key for o in s3.list("src", "a/")] == ["a/b.txt"]
    assert s3.get_range("src", "a/b.txt", 2, 5) == b"234"
    assert s3.get_range("src", "a/b.txt", 8, None) == b"89"
    f = s3.open_input("src", "a/b.txt")
    f.seek(3)
    assert f.read(4) == b"3456"
    s3.delete("src", ["a/b.txt"])
    with pytest.raises(NotFound):
        s3.head("src", "a/b.txt")


def test_ingest_through_s3(s3):
    rows = "".join(f"{i},{'x' if i % 2 else 'y'},2020-0{1 + i % 3}-01\n" for i in range(500))
    s3.put_bytes("src", "in/a.csv", ("id,s,d\n" + rows).encode())
    splits = plan_splits(s3.list("src", "in/"), store=s3, format=None, options={},
                         split_size_bytes=2000)
    assert len(splits) > 1
    schema = Schema.of([("id", "long"), ("s", "string"), ("d", "date")])
    total = 0
    for sp in splits:
        res = ingest_split(sp, schema=schema, partitioning=[PartitionField(column="d",
                                                                          transform="month")],
                           store=s3, lake_bucket="lake", table_prefix="t",
                           file_prefix=f"j-{sp.index:05d}", quarantine_prefix="q")
        for f in res.files:
            body = s3.get_range("lake", f.key, 0, None)
            total += pq.read_metadata(io.BytesIO(body)).num_rows
    assert total == 500


def test_if_match_detects_replacement(s3):
    s3.put_bytes("src", "c.csv", b"a\n1\n")
    old = s3.head("src", "c.csv")
    s3.put_bytes("src", "c.csv", b"a\n2\n")
    f = s3.open_input("src", "c.csv", size=old.size, etag=old.etag)
    with pytest.raises(SourceChanged):
        f.read()
