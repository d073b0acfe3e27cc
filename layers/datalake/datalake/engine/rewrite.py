"""Compaction's Parquet I/O: check and group the inputs by schema, then rewrite them.

The inputs of a :class:`~datalake.domain.compaction.MergeGroup` are checked against
their checksums and split by their exact Parquet schema (names, types, nullability and
``PARQUET:field_id``, read from the footers): only files of one schema merge, their
bytes copied with no cast and no column mapping, so a merge never reinterprets old data.
Each merge is streamed (row group by row group) into files near the target size through
the ingest engine's :class:`~datalake.engine.writer.RollingWriter`; row groups hold at
least ``MIN_ROW_GROUP_ROWS`` rows (only a merge's last one may hold fewer).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datalake.domain.compaction import (
    MAX_MERGE_INPUT_BYTES,
    MergeGroup,
    MergeInput,
    PartitionRef,
    chunk_by_size,
    closes_row_group,
    may_close_file,
    output_key,
    output_stem,
)
from datalake.engine.store import ObjectStore
from datalake.engine.uploads import Uploader
from datalake.engine.writer import MIN_ROW_GROUP_ROWS, RollingWriter, WrittenFile
from datalake.errors import DatalakeError

log = logging.getLogger(__name__)

#: A row group closes at this many rows whatever its size ...
MAX_ROW_GROUP_ROWS = 1_048_576
#: ... or once it holds this many bytes in memory (bounds a run's memory).
MAX_ROW_GROUP_BYTES = 64 * 2**20
#: Rows per batch read from an input file.
READ_BATCH_ROWS = 65_536
#: A file being written is held in memory up to this size, then spilled to a temp file.
SPOOL_BYTES = 16 * 2**20
#: The row-group settings that shape the outputs (part of their names).
ROW_GROUP_SETTINGS = (MIN_ROW_GROUP_ROWS, MAX_ROW_GROUP_ROWS, MAX_ROW_GROUP_BYTES)


@dataclass
class Merge:
    """Inputs of one schema that merge into new files, with their footers."""

    partition: PartitionRef
    schema_version: int | None
    schema: pa.Schema
    inputs: list[MergeInput] = field(default_factory=list)
    metadata: list[pq.FileMetaData] = field(default_factory=list)


def _schema_key(schema: pa.Schema) -> tuple[Any, ...]:
    return tuple(
        (f.name, str(f.type), f.nullable, tuple(sorted((f.metadata or {}).items())))
        for f in schema
    )


def split_by_schema(
    group: MergeGroup, store: ObjectStore, *, max_merge_bytes: int = MAX_MERGE_INPUT_BYTES
) -> tuple[list[Merge], list[str]]:
    """Check each input against its checksum and split the sound ones into merges.

    ``max_merge_bytes`` bounds the input bytes of one merge (one commit).

    Returns
    -------
    tuple[list[Merge], list[str]]
        The merges (inputs of one exact schema, cut into chunks of bounded input size,
        each of at least two files) and the ids of the inputs that do not match their
        checksums (never merged: a tampered file must not be carried into a new one).
    """
    by_schema: dict[tuple[Any, ...], Merge] = {}
    corrupt: list[str] = []
    for item in group.inputs:
        with store.open_input(item.bucket, item.key) as f:
            data = f.read()  # inputs are small files (under half the target size)
        if hashlib.sha256(data).hexdigest() != item.checksum:
            log.warning("s3://%s/%s does not match its checksum: not merged", item.bucket,
                        item.key)
            corrupt.append(item.id)
            continue
        md = pq.read_metadata(pa.BufferReader(data))
        schema = md.schema.to_arrow_schema()
        merge = by_schema.setdefault(
            _schema_key(schema), Merge(group.partition, group.schema_version, schema)
        )
        merge.inputs.append(item)
        merge.metadata.append(md)
    merges = []
    for m in by_schema.values():
        pairs = list(zip(m.inputs, m.metadata, strict=True))
        for chunk in chunk_by_size(pairs, lambda p: p[0].size_bytes, max_bytes=max_merge_bytes):
            if len(chunk) >= 2:
                merges.append(Merge(m.partition, m.schema_version, m.schema,
                                    [i for i, _ in chunk], [md for _, md in chunk]))
    return merges, corrupt


def _batches(merge: Merge, store: ObjectStore) -> Iterator[pa.RecordBatch]:
    """Every row of the merge's inputs, in key order, in bounded batches."""
    for item, md in zip(merge.inputs, merge.metadata, strict=True):
        with store.open_input(item.bucket, item.key) as f:
            pf = pq.ParquetFile(f, metadata=md)
            yield from pf.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False)


def rewrite(
    merge: Merge,
    store: ObjectStore,
    *,
    target: int,
    compression: str,
    discard: Callable[[str, list[str]], None],
) -> list[WrittenFile]:
    """Stream the merge's inputs into files near ``target`` bytes and upload them.

    Outputs go under the inputs' folder with deterministic keys
    (:func:`~datalake.domain.compaction.output_stem`), so a re-run after a crash before
    the commit writes the same keys.

    Parameters
    ----------
    merge:
        The inputs to rewrite (one schema).
    store:
        Where inputs are read and outputs written (the inputs' bucket).
    target:
        The output file size in bytes.
    compression:
        The outputs' Parquet codec.
    discard:
        Called as ``discard(bucket, keys)`` with the outputs uploaded so far when the
        rewrite fails (the caller deletes those no catalog row names), then it re-raises.

    Raises
    ------
    DatalakeError
        When the rows read differ from the inputs' record counts (nothing is committed).
    """
    bucket = merge.inputs[0].bucket
    folder = posixpath.dirname(merge.inputs[0].key)
    stem = output_stem(merge.inputs, target=target, compression=compression,
                       row_groups=ROW_GROUP_SETTINGS)
    total_rows = sum(i.record_count for i in merge.inputs)
    total_bytes = sum(i.size_bytes for i in merge.inputs)
    bytes_per_row = total_bytes / total_rows if total_rows else 0.0
    workdir = tempfile.mkdtemp(prefix="dl-compact-")
    # one put at a time, on this thread: the inputs stream from the same store
    uploads = Uploader(store, bucket, concurrency=1)
    files: list[WrittenFile] = []
    out = RollingWriter(
        schema=merge.schema, uploads=uploads,
        next_key=lambda: output_key(folder, stem, len(files)), files=files,
        partition=dict(merge.partition.values), target=target, compression=compression,
        use_dictionary=True, tmp_dir=workdir, spool_bytes=SPOOL_BYTES,
        spool_budget=[0, SPOOL_BYTES],
    )
    rows_done = 0

    def write(buffer: list[pa.RecordBatch]) -> None:
        nonlocal rows_done
        table = pa.Table.from_batches(buffer, schema=merge.schema)
        rows_done += table.num_rows
        left = (total_rows - rows_done) * bytes_per_row
        out.write_group(table, may_roll=may_close_file(bytes_left=left, target=target))

    try:
        buffer: list[pa.RecordBatch] = []
        rows = nbytes = 0
        for batch in _batches(merge, store):
            if batch.num_rows == 0:
                continue
            buffer.append(batch)
            rows += batch.num_rows
            nbytes += batch.nbytes
            if closes_row_group(
                rows=rows, nbytes=nbytes, rows_left_after=total_rows - rows_done - rows,
                room_bytes=max(target - out.size, 0), bytes_per_row=bytes_per_row,
                min_rows=MIN_ROW_GROUP_ROWS, max_rows=MAX_ROW_GROUP_ROWS,
                max_bytes=MAX_ROW_GROUP_BYTES,
            ):
                write(buffer)
                buffer, rows, nbytes = [], 0, 0
        if buffer:
            write(buffer)
        out.close_file()
        uploads.wait()
        written = sum(f.record_count for f in files)
        if written != total_rows:
            raise DatalakeError(
                f"compaction of {merge.partition.path!r} read {written} rows, "
                f"the catalog says {total_rows}; nothing was committed"
            )
        return files
    except BaseException:
        uploads.drain()
        out.abort()
        discard(bucket, [f.key for f in files])
        raise
    finally:
        uploads.close()
        shutil.rmtree(workdir, ignore_errors=True)
