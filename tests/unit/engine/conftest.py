"""Shared fixtures for the engine tests: a local object store and small data sets."""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from datalake.domain.partitioning import PartitionField
from datalake.domain.schema import Schema
from datalake.engine.ingest import SplitResult, ingest_split
from datalake.engine.splits import plan_splits
from datalake.engine.store import LocalObjectStore

SCHEMA = Schema.of([
    ("id", "long"), ("name", "string"), ("amount", "decimal(10,2)"), ("ts", "timestamp"),
    ("tstz", "timestamptz"), ("d", "date"), ("u", "uuid"), ("n", "int"),
])


def sample_rows(n: int = 60) -> list[dict[str, Any]]:
    rows = []
    base = dt.datetime(2016, 12, 30, 20, 0, 0)
    for i in range(n):
        ts = base + dt.timedelta(hours=7 * i, minutes=i)
        rows.append({
            "id": i * 37 - 500,
            "name": None if i % 11 == 5 else f"name-{i % 7}-é",
            "amount": decimal.Decimal(i * 131 - 2000).scaleb(-2),
            "ts": None if i % 13 == 7 else ts,
            "tstz": ts.replace(tzinfo=dt.UTC),
            "d": (ts.date() if i % 9 != 4 else None),
            "u": str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % (1 << 128))),
            "n": (i % 5) - 2,
        })
    return rows


def arrow_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({
        "id": pa.array([r["id"] for r in rows], pa.int64()),
        "name": pa.array([r["name"] for r in rows], pa.string()),
        "amount": pa.array([r["amount"] for r in rows], pa.decimal128(10, 2)),
        "ts": pa.array([r["ts"] for r in rows], pa.timestamp("us")),
        "tstz": pa.array([r["tstz"] for r in rows], pa.timestamp("us", tz="UTC")),
        "d": pa.array([r["d"] for r in rows], pa.date32()),
        "u": pa.array([r["u"] for r in rows], pa.string()),
        "n": pa.array([r["n"] for r in rows], pa.int32()),
    })


def encode(rows: list[dict[str, Any]], fmt: str) -> bytes:
    """Serialise rows as csv, csv.gz, jsonl, jsonl.gz, parquet, avro, avro-deflate."""
    table = arrow_table(rows)
    if fmt.startswith("csv"):
        out = io.BytesIO()
        pcsv.write_csv(table, out)
        data = out.getvalue()
        return gzip.compress(data) if fmt.endswith(".gz") else data
    if fmt.startswith("jsonl"):
        lines = []
        for r in rows:
            rec = {k: (v.isoformat() if hasattr(v, "isoformat") else
                       str(v) if isinstance(v, decimal.Decimal) else v) for k, v in r.items()}
            lines.append(json.dumps(rec))
        data = ("\n".join(lines) + "\n").encode()
        return gzip.compress(data) if fmt.endswith(".gz") else data
    if fmt == "parquet":
        out = io.BytesIO()
        pq.write_table(table, out, row_group_size=17)
        return out.getvalue()
    if fmt.startswith("avro"):
        import fastavro

        schema = {"type": "record", "name": "r", "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": ["null", "string"]},
            {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                        "precision": 10, "scale": 2}},
            {"name": "ts", "type": ["null", {"type": "long",
                                             "logicalType": "local-timestamp-micros"}]},
            {"name": "tstz", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "d", "type": ["null", {"type": "int", "logicalType": "date"}]},
            {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "n", "type": "int"},
        ]}
        out = io.BytesIO()
        codec = fmt.split("-", 1)[1] if "-" in fmt else "null"
        fastavro.writer(out, fastavro.parse_schema(schema), rows, codec=codec,
                        sync_interval=200)
        return out.getvalue()
    raise ValueError(fmt)


EXT = {"csv": ".csv", "csv.gz": ".csv.gz", "jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz",
       "parquet": ".parquet", "avro": ".avro", "avro-deflate": ".avro"}


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    (tmp_path / "src").mkdir()
    (tmp_path / "lake").mkdir()
    return LocalObjectStore(tmp_path)


def put(store: LocalObjectStore, key: str, data: bytes) -> None:
    store.put_bytes("src", key, data)


def ingest_all(store: LocalObjectStore, prefix: str, *, schema: Schema = SCHEMA,
               partitioning: list[PartitionField] | None = None,
               options: dict[str, Any] | None = None, split_size: int = 128 * 2**20,
               policy: str = "evolve", job: str = "job") -> list[SplitResult]:
    splits = plan_splits(store.list("src", prefix), store=store, format=None,
                         options=options or {}, split_size_bytes=split_size)
    return [
        ingest_split(sp, schema=schema, partitioning=partitioning or [], store=store,
                     lake_bucket="lake", table_prefix="tables/t",
                     file_prefix=f"{job}-{sp.index:05d}", quarantine_prefix="quarantine/t",
                     options=options, schema_policy=policy)
        for sp in splits
    ]


def read_back(store: LocalObjectStore, results: list[SplitResult]) -> pa.Table:
    tables = []
    for r in results:
        for f in r.files:
            t = pq.read_table(Path(store.root) / "lake" / f.key)
            tables.append(t)
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables)


def quarantine_lines(store: LocalObjectStore, results: list[SplitResult]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        if r.quarantine_key:
            data = (Path(store.root) / "lake" / r.quarantine_key).read_text()
            out.extend(json.loads(line) for line in data.splitlines())
    return out
