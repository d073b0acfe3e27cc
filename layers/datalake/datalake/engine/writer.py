"""Partitioned Parquet writer with bounded memory.

Rows are buffered per partition. When a partition holds ``row_group_rows`` rows (64k by
default) they are written as one row group to that partition's open ParquetWriter, whose
output is hashed as it is written and spooled in memory (spilling to a temp file past a
budget); when the file reaches ``target_file_size_bytes`` it is closed, its column
statistics are taken from the footer, and it is uploaded (on ``uploads``' threads, which
``finish()`` waits for). Rows buffered in memory are
capped (rows and bytes): over the cap every partition buffer is spilled to a local Arrow
IPC file and read back when its partition writes its next row group. ``finish()`` writes
every remainder (a partition that never reached a row group becomes one file written in
one go), partitions in path order.

Object keys are ``{table_prefix}/{partition path}/part-{file_prefix}-{n:04d}.parquet``
with ``n`` counting files in the order they complete, which depends only on the input;
the caller makes ``file_prefix`` unique per attempt (``domain.layout``), so that two
attempts at the same work never write, or delete, the same key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datalake.domain.vocabulary import DEFAULT_COMPRESSION, DEFAULT_TARGET_FILE_SIZE_MB
from datalake.engine.conform import json_safe
from datalake.engine.store import ObjectStore
from datalake.engine.uploads import DEFAULT_CONCURRENCY, DEFAULT_MAX_INFLIGHT_BYTES, Uploader

MIN_ROW_GROUP_ROWS = 65_536


def _warm_up() -> None:
    """Load, at import, what converting footer statistics to Python first needs (time
    zone support): a one-time cold-start cost, not one paid inside the first split."""
    pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()
    pa.scalar(0, pa.timestamp("us")).as_py()
    pa.scalar(0, pa.decimal128(3, 1)).as_py()


_warm_up()


@dataclass
class WrittenFile:
    """A data file written (and uploaded) by a worker, not yet committed."""

    key: str
    partition: dict[str, str | None]
    record_count: int
    size_bytes: int
    checksum: str
    column_stats: dict[str, Any]
    row_groups: int = 1
    #: the file's Parquet footer (:func:`encode_footer`), for its Iceberg description
    footer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "partition": self.partition, "record_count": self.record_count,
                "size_bytes": self.size_bytes, "checksum": self.checksum,
                "column_stats": self.column_stats, "row_groups": self.row_groups}


@dataclass
class _Buffer:
    path: str  # hive path ('' when unpartitioned)
    values: dict[str, str | None]
    file: RollingWriter  # the partition's open file, rolled at the target size
    batches: list[pa.RecordBatch] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0
    spill_files: list[str] = field(default_factory=list)
    spilled_rows: int = 0


class _SpoolSink(io.RawIOBase):
    """A write-only file that hashes what it receives and keeps it in memory until it
    grows past ``spool_bytes``, then spills to a temp file (bounded memory per file)."""

    def __init__(self, spool_bytes: int, tmp_dir: str, budget: list[int] | None = None) -> None:
        super().__init__()
        #: [bytes held in memory by all sinks, limit] shared by a writer's sinks
        self._budget = budget if budget is not None else [0, 1 << 62]
        self.sha = hashlib.sha256()
        self.size = 0
        self._mem: list[bytes] | None = []
        self._spool = spool_bytes
        self._tmp_dir = tmp_dir
        self.path: str | None = None
        self._file: Any = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.sha.update(b)
        self.size += len(b)
        if self._mem is not None:
            self._mem.append(b)
            self._budget[0] += len(b)
            if self.size > self._spool or self._budget[0] > self._budget[1]:
                self._budget[0] -= self.size
                fd, self.path = tempfile.mkstemp(suffix=".parquet", dir=self._tmp_dir)
                self._file = os.fdopen(fd, "wb")
                for chunk in self._mem:
                    self._file.write(chunk)
                self._mem = None
        else:
            self._file.write(b)
        return len(b)

    def flush(self) -> None:
        # closing the Arrow stream over this sink closes a spilled file already
        if self._file is not None and not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        # stays "open" for getvalue(); RawIOBase.close would make PythonFile complain

    @property
    def closed(self) -> bool:
        return False

    def getvalue(self) -> bytes | None:
        return b"".join(self._mem) if self._mem is not None else None

    def discard(self) -> None:
        self.close()
        if self._mem is not None:
            self._budget[0] -= self.size
        self._mem = None
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(4 * 2**20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def encode_footer(md: pq.FileMetaData) -> str:
    """A file's Parquet footer as text for the catalog (zlib, base64; ~1 KB a file).

    Commit describes the file to Iceberg from it (:func:`decode_footer`), exactly as a
    reader of the object would, without fetching the object again.
    """
    sink = pa.BufferOutputStream()
    md.write_metadata_file(sink)
    return base64.b64encode(zlib.compress(sink.getvalue().to_pybytes(), 6)).decode("ascii")


def decode_footer(text: str) -> pq.FileMetaData:
    """The footer :func:`encode_footer` stored."""
    raw = zlib.decompress(base64.b64decode(text))
    return pq.read_metadata(pa.BufferReader(raw))


def column_stats(md: pq.FileMetaData) -> dict[str, Any]:
    """Per-column ``{min, max, null_count}`` over all row groups (JSON-serialisable).

    Read from the footer the writer just produced: no pass over the data.
    """
    ncols = md.num_columns
    schema = md.schema
    names = [schema.column(c).path for c in range(ncols)]
    mins: list[Any] = [None] * ncols
    maxs: list[Any] = [None] * ncols
    nulls = [0] * ncols
    have_nulls = [True] * ncols
    have_minmax = [True] * ncols
    for r in range(md.num_row_groups):
        rg = md.row_group(r)
        rows = rg.num_rows
        for c in range(ncols):
            st = rg.column(c).statistics
            if st is None:
                have_nulls[c] = have_minmax[c] = False
                continue
            nc = st.null_count if st.has_null_count else None
            if nc is None:
                have_nulls[c] = False
            else:
                nulls[c] += nc
            if st.has_min_max:
                lo, hi = st.min, st.max
                if mins[c] is None or lo < mins[c]:
                    mins[c] = lo
                if maxs[c] is None or hi > maxs[c]:
                    maxs[c] = hi
            elif nc is None or rows > nc:
                have_minmax[c] = False
    return {
        names[c]: {
            "min": json_safe(mins[c]) if have_minmax[c] else None,
            "max": json_safe(maxs[c]) if have_minmax[c] else None,
            "null_count": nulls[c] if have_nulls[c] else None,
        }
        for c in range(ncols)
    }


class RollingWriter:
    """Writes row groups into Parquet files of about ``target`` bytes, one file at a time.

    A file is hashed and spooled as it is written (in memory up to ``spool_bytes``, then
    in a temp file; ``spool_budget`` bounds what all of a writer's files hold in memory
    together). When it reaches ``target`` bytes (or :meth:`close_file` is called) it is
    closed, its column statistics are taken from its footer, and it is handed to
    ``uploads`` under the key ``next_key()`` gives; the :class:`WrittenFile` is appended
    to ``files`` before the put, so a failed caller deletes it too.

    The ingest engine (:class:`PartitionedWriter`, one per partition) and compaction
    (:mod:`datalake.engine.rewrite`) both write their files through this class.

    Parameters
    ----------
    schema:
        The files' Arrow schema.
    uploads:
        Puts the finished files (into its bucket).
    next_key:
        Names the next finished file (called once per file, as it closes).
    files:
        Where the finished files are recorded (shared by a writer's partitions).
    partition:
        The partition values recorded on each file.
    target:
        The size in bytes at which a file closes.
    compression, use_dictionary:
        Passed to :class:`pyarrow.parquet.ParquetWriter`.
    tmp_dir, spool_bytes, spool_budget:
        Where files spill, past how many bytes each, and ``[held, limit]`` bytes in
        memory for all files sharing the budget.
    """

    def __init__(self, *, schema: pa.Schema, uploads: Uploader, next_key: Callable[[], str],
                 files: list[WrittenFile], partition: dict[str, str | None], target: int,
                 compression: str, use_dictionary: bool | list[str], tmp_dir: str,
                 spool_bytes: int, spool_budget: list[int]) -> None:
        self.schema = schema
        self.uploads = uploads
        self.next_key = next_key
        self.files = files
        self.partition = partition
        self.target = int(target)
        self.compression = compression
        self.use_dictionary = use_dictionary
        self.tmp_dir = tmp_dir
        self.spool_bytes = int(spool_bytes)
        self.spool_budget = spool_budget
        self._writer: pq.ParquetWriter | None = None
        self._sink: _SpoolSink | None = None
        self._stream: Any = None

    @property
    def is_open(self) -> bool:
        """Whether a file is being written."""
        return self._writer is not None

    @property
    def size(self) -> int:
        """Bytes written to the open file so far (0 when none is open)."""
        return int(self._stream.tell()) if self._writer is not None else 0

    def write_group(self, table: pa.Table, *, may_roll: bool = True) -> None:
        """Write ``table`` as one row group of the open file (opening one if needed);
        then, if ``may_roll``, close the file once it has reached the target size."""
        if self._writer is None:
            self._sink = _SpoolSink(self.spool_bytes, self.tmp_dir, self.spool_budget)
            self._stream = pa.BufferedOutputStream(pa.PythonFile(self._sink, mode="w"), 2**16)
            self._writer = pq.ParquetWriter(
                self._stream, self.schema, compression=self.compression,
                write_statistics=True, use_dictionary=self.use_dictionary,
            )
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        if may_roll and self._stream.tell() >= self.target:
            self.close_file()

    def close_file(self) -> None:
        """Close the open file (if any) and hand it to the uploads."""
        if self._writer is None:
            return
        writer, sink = self._writer, self._sink
        assert sink is not None
        writer.close()
        if not self._stream.closed:
            self._stream.close()
        sink.flush()
        self._writer, self._sink, self._stream = None, None, None
        md = writer.writer.metadata
        data = sink.getvalue()
        if data is None:
            sink.close()
            # the spilled file is removed by the upload, once stored
            self._upload(None, sink.sha.hexdigest(), sink.size, md, sink.path,
                         cleanup=sink.discard)
        else:
            sink.discard()  # in this thread: it returns the sink's share of the budget
            self._upload(data, sink.sha.hexdigest(), sink.size, md)

    def write_whole(self, table: pa.Table) -> None:
        """Write ``table`` as a whole file of one row group, natively in memory (no file
        may be open), and hand it to the uploads."""
        assert self._writer is None
        sink = pa.BufferOutputStream()
        writer = pq.ParquetWriter(sink, self.schema, compression=self.compression,
                                  write_statistics=True, use_dictionary=self.use_dictionary)
        writer.write_table(table, row_group_size=max(table.num_rows, 1))
        writer.close()
        data = sink.getvalue()
        self._upload(data, hashlib.sha256(data).hexdigest(), data.size, writer.writer.metadata)

    def abort(self) -> None:
        """Drop the open file, if any (its spool and temp file)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        if self._sink is not None:
            self._sink.discard()
        self._writer, self._sink, self._stream = None, None, None

    def _upload(self, data: Any, checksum: str, size: int, md: pq.FileMetaData,
                path: str | None = None, cleanup: Callable[[], None] | None = None) -> None:
        key = self.next_key()
        # recorded before it is stored, so that a failed caller deletes it too
        if data is not None:
            self.uploads.put_bytes(key, data, size)
        else:
            assert path is not None
            self.uploads.put_file(key, path, size, cleanup)
        self.files.append(WrittenFile(key=key, partition=dict(self.partition),
                                      record_count=md.num_rows, size_bytes=size,
                                      checksum=checksum, column_stats=column_stats(md),
                                      row_groups=md.num_row_groups,
                                      footer=encode_footer(md)))


class PartitionedWriter:
    """Buffers conformed rows per partition and writes healthy Parquet files."""

    def __init__(self, *, schema: pa.Schema, store: ObjectStore, bucket: str, table_prefix: str,
                 file_prefix: str, compression: str = DEFAULT_COMPRESSION,
                 target_file_size_bytes: int = DEFAULT_TARGET_FILE_SIZE_MB * 2**20,
                 row_group_rows: int = MIN_ROW_GROUP_ROWS,
                 max_buffered_rows: int = 2_000_000,
                 max_buffered_bytes: int = 96 * 2**20,
                 tmp_dir: str | None = None, spool_bytes: int = 16 * 2**20,
                 max_spooled_bytes: int = 48 * 2**20, dictionary: str = "strings",
                 upload_concurrency: int = DEFAULT_CONCURRENCY,
                 max_inflight_upload_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES) -> None:
        self.schema = schema
        self.store = store
        self.bucket = bucket
        self.table_prefix = table_prefix.strip("/")
        self.file_prefix = file_prefix
        self.compression = compression
        self.target = int(target_file_size_bytes)
        self.row_group_rows = int(row_group_rows)
        self.max_rows = int(max_buffered_rows)
        self.max_bytes = int(max_buffered_bytes)
        self.tmp = tempfile.mkdtemp(prefix="datalake-", dir=tmp_dir)
        self.uploads = Uploader(store, bucket, concurrency=upload_concurrency,
                                max_inflight_bytes=max_inflight_upload_bytes)
        self.spool_bytes = int(spool_bytes)
        if dictionary == "all":
            self.dictionary: bool | list[str] = True
        elif dictionary == "none":
            self.dictionary = False
        else:  # "strings": where dictionary encoding pays for its hashing
            self.dictionary = [f.name for f in schema if pa.types.is_string(f.type)
                               or pa.types.is_binary(f.type) or pa.types.is_boolean(f.type)]
        self._spills = 0
        self._spool_budget = [0, int(max_spooled_bytes)]
        self.buffers: dict[str, _Buffer] = {}
        self.files: list[WrittenFile] = []
        self._n = 0
        self.buffered_rows = 0
        # parent batch id -> [nbytes, live slices]; memory pinned by buffered slices
        self._parents: dict[int, list[int]] = {}
        self._pinned = 0

    # ---------------------------------------------------------------- input

    def add(self, path: str, values: dict[str, str | None], batch: pa.RecordBatch,
            parent: pa.RecordBatch | None = None) -> None:
        """Buffer ``batch`` (possibly a slice of ``parent``) for partition ``path``."""
        if batch.num_rows == 0:
            return
        buf = self.buffers.get(path)
        if buf is None:
            buf = self.buffers[path] = _Buffer(path=path, values=values,
                                               file=self._rolling_writer(path, values))
        src = parent if parent is not None else batch
        pid = id(src)
        entry = self._parents.get(pid)
        if entry is None:
            entry = self._parents[pid] = [src.nbytes, 0, src]
            self._pinned += entry[0]
        entry[1] += 1
        buf.batches.append(batch)
        buf.parents.append(pid)
        buf.rows += batch.num_rows
        # estimate from the parent (exact nbytes of a slice is slow to compute)
        buf.nbytes += entry[0] * batch.num_rows // max(src.num_rows, 1)
        self.buffered_rows += batch.num_rows
        if buf.rows + buf.spilled_rows >= self.row_group_rows:
            self._write_group(buf)
        if self.buffered_rows > self.max_rows or self._pinned > self.max_bytes:
            self._relieve()

    # ---------------------------------------------------------------- output

    def _release(self, buf: _Buffer) -> None:
        for pid in buf.parents:
            entry = self._parents[pid]
            entry[1] -= 1
            if entry[1] == 0:
                self._pinned -= entry[0]
                del self._parents[pid]
        self.buffered_rows -= buf.rows
        buf.batches, buf.parents, buf.rows, buf.nbytes = [], [], 0, 0

    def _relieve(self) -> None:
        """Spill every partition's buffered rows to a local Arrow IPC file.

        Buffers of unsorted input share the source batches they were sliced from, so
        only spilling all of them frees memory. Spilled rows are read back (memory-mapped)
        when their partition writes its next row group, so row groups keep their size.
        """
        for path in sorted(self.buffers):
            buf = self.buffers[path]
            if not buf.rows:
                continue
            fname = os.path.join(self.tmp, f"spill-{self._spills:06d}.arrows")
            self._spills += 1
            with pa.OSFile(fname, "wb") as sink, pa.ipc.new_stream(sink, self.schema) as w:
                for rb in buf.batches:
                    w.write_batch(rb)
            buf.spill_files.append(fname)
            buf.spilled_rows += buf.rows
            self._release(buf)
        pa.default_memory_pool().release_unused()

    def _take(self, buf: _Buffer) -> pa.Table:
        """All of a partition's rows (spilled first, then in memory) as one table."""
        batches: list[pa.RecordBatch] = []
        for fname in buf.spill_files:
            with pa.memory_map(fname) as src:
                batches.extend(pa.ipc.open_stream(src).read_all().to_batches())
            os.unlink(fname)  # the mapping stays valid until the batches are freed
        buf.spill_files = []
        buf.spilled_rows = 0
        batches.extend(buf.batches)
        return pa.Table.from_batches(batches, schema=self.schema)

    def _rolling_writer(self, path: str, values: dict[str, str | None]) -> RollingWriter:
        return RollingWriter(
            schema=self.schema, uploads=self.uploads, next_key=partial(self._next_key, path),
            files=self.files, partition=values, target=self.target,
            compression=self.compression, use_dictionary=self.dictionary, tmp_dir=self.tmp,
            spool_bytes=self.spool_bytes, spool_budget=self._spool_budget,
        )

    def _next_key(self, path: str) -> str:
        """The key of the next file to finish (numbered in completion order)."""
        name = f"part-{self.file_prefix}-{self._n:04d}.parquet"
        self._n += 1
        return "/".join(p for p in (self.table_prefix, path, name) if p)

    def _write_group(self, buf: _Buffer) -> None:
        if not buf.rows and not buf.spilled_rows:
            return
        table = self._take(buf)
        buf.file.write_group(table)
        self._release(buf)
        del table

    def finish(self) -> list[WrittenFile]:
        """Write all remainders (partitions in path order), upload, return the files."""
        for path in sorted(self.buffers):
            buf = self.buffers[path]
            if not buf.file.is_open and (buf.rows or buf.spilled_rows):
                # a whole file from one buffer: written natively in memory
                table = self._take(buf)
                self._release(buf)
                buf.file.write_whole(table)
                del table
                continue
            self._write_group(buf)
            buf.file.close_file()
        self.buffers.clear()
        self.uploads.wait()
        self.close()
        return self.files

    def abort(self) -> None:
        """Drop buffers and temp files once every put in flight has ended (stored
        objects stay: ingest deletes ``files``)."""
        self.uploads.drain()
        for buf in self.buffers.values():
            buf.file.abort()
        self.buffers.clear()
        self.close()

    def close(self) -> None:
        self.uploads.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
