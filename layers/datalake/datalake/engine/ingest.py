"""``ingest_splits``: read a batch's splits, conform them, partition them, write Parquet.

Row numbers in the quarantine: ``row`` is the 0-based index of the record within the
source object (header and skipped rows excluded) when the split starts at byte 0 or is
a Parquet split; for a byte-range split that starts later (CSV, JSON Lines, Avro) it is
the index within the split and the line also carries ``split_offset`` (the split's
first byte): the records before it are not counted, to keep splits independent.
Malformed CSV rows (wrong field count) have ``row: null`` and their raw text as value.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from datalake.domain.partitioning import PartitionField
from datalake.domain.schema import Schema
from datalake.domain.vocabulary import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_COMPRESSION,
    DEFAULT_SCHEMA_POLICY,
    DEFAULT_TARGET_FILE_SIZE_MB,
    SourceFormat,
)
from datalake.engine.arrow_schema import to_arrow_schema
from datalake.engine.conform import Conformer, json_safe
from datalake.engine.partitioner import Partitioner
from datalake.engine.readers import make_reader
from datalake.engine.splits import Split
from datalake.engine.store import ObjectStore
from datalake.engine.uploads import DEFAULT_CONCURRENCY
from datalake.engine.writer import PartitionedWriter, WrittenFile
from datalake.errors import DatalakeError, NotFound, SourceChanged

__all__ = ["SplitResult", "WrittenFile", "ingest_split", "ingest_splits"]


@dataclass
class SplitResult:
    records_read: int
    records_written: int
    records_rejected: int
    bytes_read: int
    files: list[WrittenFile]
    quarantine_key: str | None
    discarded_columns: list[str] = field(default_factory=list)
    source_columns: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read, "records_written": self.records_written,
            "records_rejected": self.records_rejected, "bytes_read": self.bytes_read,
            "files": [f.to_json() for f in self.files], "quarantine_key": self.quarantine_key,
            "discarded_columns": list(self.discarded_columns),
            "source_columns": list(self.source_columns),
        }


class _Quarantine:
    """Rejected records spooled to a local JSON Lines file, uploaded at the end."""

    def __init__(self, tmp_dir: str | None) -> None:
        self.uri = ""
        self.count = 0
        self.offset: int | None = None
        fd, self.path = tempfile.mkstemp(suffix=".jsonl", dir=tmp_dir)
        self.f = os.fdopen(fd, "w", encoding="utf-8")

    def begin(self, split: Split) -> None:
        """Attribute the records that follow to ``split``."""
        self.uri = split.uri
        whole = split.start == 0 or split.format == SourceFormat.PARQUET
        self.offset = None if whole else split.start

    def add(self, row: int | None, column: str | None, value: Any, error: str,
            record: dict[str, Any] | None) -> None:
        line: dict[str, Any] = {"source": self.uri, "row": row}
        if self.offset is not None:
            line["split_offset"] = self.offset
        line.update({"column": column, "value": json_safe(value), "error": error,
                     "record": json_safe(record) if record is not None else None})
        self.f.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if not self.f.closed:
            self.f.close()

    def discard(self) -> None:
        self.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def _check_source(store: ObjectStore, split: Split, when: str) -> None:
    try:
        info = store.head(split.bucket, split.key)
    except NotFound as e:
        raise SourceChanged(f"{split.uri} disappeared {when} reading it") from e
    if info.size != split.size or (split.etag and info.etag != split.etag):
        raise SourceChanged(
            f"{split.uri} changed {when} reading it (planned size {split.size}, etag "
            f"{split.etag!r}; found size {info.size}, etag {info.etag!r})",
            details={"planned": {"size": split.size, "etag": split.etag},
                     "found": {"size": info.size, "etag": info.etag}},
        )


def ingest_split(split: Split, **kwargs: Any) -> SplitResult:
    """Ingest one split: :func:`ingest_splits` of ``[split]``."""
    return ingest_splits([split], **kwargs)


def _merge_names(into: list[str], names: list[str]) -> None:
    for name in names:
        if name not in into:
            into.append(name)


def ingest_splits(splits: list[Split], *, schema: Schema, partitioning: list[PartitionField],
                  store: ObjectStore, lake_bucket: str, table_prefix: str, file_prefix: str,
                  quarantine_prefix: str, options: dict[str, Any] | None = None,
                  schema_policy: str = DEFAULT_SCHEMA_POLICY,
                  compression: str = DEFAULT_COMPRESSION,
                  target_file_size_bytes: int = DEFAULT_TARGET_FILE_SIZE_MB * 2**20,
                  on_chunk: Callable[[], None] | None = None) -> SplitResult:
    """Ingest a batch's splits, in order, into one set of files: stream each in chunks of
    ``options['batch_size']`` (:data:`DEFAULT_BATCH_SIZE`) records, conform each chunk to ``schema``
    (rejecting bad records to the quarantine), partition, and write Parquet under
    ``table_prefix`` in ``lake_bucket``. The splits share one writer, so a partition's
    rows from several small objects land in one file.

    Raises
    ------
    SourceChanged
        An object's size or ETag differs from its split's, before or after reading.
    CorruptInput
        A split cannot be parsed as its format.
    SchemaMismatch
        ``schema_policy == "freeze"`` and a source has columns outside the schema (or
        lacks a required column).
    Exception
        Whatever ``on_chunk`` (called after each streaming chunk: heartbeats, deadlines)
        raises; as with every failure, the objects written so far are deleted.
    """
    if not splits:
        raise ValueError("ingest_splits needs at least one split")
    options = dict(options or {})
    batch_size = int(options.get("batch_size", DEFAULT_BATCH_SIZE))
    tmp_dir = options.get("tmp_dir")
    partitioner = Partitioner(list(partitioning), schema)
    writer = PartitionedWriter(
        schema=to_arrow_schema(schema), store=store,
        bucket=lake_bucket, table_prefix=table_prefix, file_prefix=file_prefix,
        compression=compression, target_file_size_bytes=target_file_size_bytes,
        row_group_rows=int(options.get("row_group_rows", 65_536)),
        max_buffered_rows=int(options.get("max_buffered_rows", 2_000_000)),
        max_buffered_bytes=int(options.get("max_buffered_bytes", 96 * 2**20)),
        tmp_dir=tmp_dir, dictionary=str(options.get("parquet_dictionary", "strings")),
        upload_concurrency=int(options.get("upload_concurrency", DEFAULT_CONCURRENCY)),
    )
    quarantine = _Quarantine(tmp_dir)
    read = written_rows = bytes_read = 0
    discarded: list[str] = []
    source_columns: list[str] = []
    try:
        for split in splits:
            _check_source(store, split, "before")
            conformer = Conformer(schema, policy=schema_policy, uri=split.uri)
            quarantine.begin(split)
            reader = make_reader(split, store, options, conformer, batch_size)
            for sb in reader.batches():
                batch = sb.batch
                read += batch.num_rows + len(sb.malformed)
                for row, text, err in sb.malformed:
                    quarantine.add(row, None, text, err, None)
                conformed, rejected, _keep = conformer.conform(batch)
                if len(rejected):
                    raw = batch.take(pa.array(rejected.rows)).to_pylist()
                    for i, col, val, err, rec in zip(rejected.rows, rejected.columns,
                                                     rejected.values, rejected.errors, raw,
                                                     strict=True):
                        rec.pop("__rows__", None)
                        quarantine.add(sb.row0 + i, col, val, err, rec)
                written_rows += conformed.num_rows
                for path, values, rows, parent in partitioner.split(conformed):
                    writer.add(path, values, rows, parent)
                if on_chunk is not None:
                    on_chunk()
            _check_source(store, split, "after")
            bytes_read += reader.bytes_read
            _merge_names(discarded, conformer.discarded)
            _merge_names(source_columns, conformer.source_columns)
        files = writer.finish()
        quarantine.close()
        qkey = None
        if quarantine.count:
            qkey = f"{quarantine_prefix.strip('/')}/{file_prefix}.jsonl"
            store.put_file(lake_bucket, qkey, quarantine.path)
    except BaseException:
        writer.abort()
        if writer.files:  # best effort: nothing of a failed batch stays behind
            with contextlib.suppress(Exception):
                store.delete(lake_bucket, [f.key for f in writer.files])
        raise
    finally:
        quarantine.discard()
    written = sum(f.record_count for f in files)
    where = splits[0].uri if len(splits) == 1 else f"{len(splits)} splits from {splits[0].uri}"
    if written != written_rows or read != written + quarantine.count:
        raise DatalakeError(
            f"{where}: counts do not reconcile: read {read}, written {written} "
            f"(expected {written_rows}), rejected {quarantine.count}")
    return SplitResult(
        records_read=read, records_written=written, records_rejected=quarantine.count,
        bytes_read=bytes_read, files=files, quarantine_key=qkey,
        discarded_columns=discarded, source_columns=source_columns,
    )
