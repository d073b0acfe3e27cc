"""Compaction: merge a partition's small committed files into files near the target size.

Runs in the optimize Lambda (pyarrow is allowed here, never in the API).

How a run works, per partition:

1. **Plan** (read-only): the partition's COMMITTED files smaller than half the target
   size are candidates. They are grouped by ``schema_version`` and then by their exact
   Parquet schema (names, types, nullability and ``PARQUET:field_id``), read from the
   footers. Only files of one group are merged together: their bytes are copied with no
   cast and no column mapping, so a merge can never reinterpret old data. A group needs
   at least two files; a very large one is merged in chunks of at most
   ``MAX_MERGE_INPUT_BYTES`` (each its own commit), so a run always makes progress.
2. **Rewrite**: the group's files are streamed (row group by row group, ``iter_batches``)
   into :class:`pyarrow.parquet.ParquetWriter`; row groups hold at least
   ``MIN_ROW_GROUP_ROWS`` (65,536, the ingest writer's minimum) rows
   (only the group's last one may hold fewer), and a new file starts when the current one
   reaches the target size (unless what is left would make a small file). Compression
   comes from ``table.format``. Each output gets a deterministic key under the inputs'
   folder, ``part-compact-<sha of inputs and settings>-<n>.parquet``, its SHA-256 checksum
   and its column statistics (from the footer, as the ingest engine records them), and is
   uploaded before any catalog change.
3. **Commit**, in one catalog transaction: ``UPDATE data_files SET status='REPLACED'
   WHERE id IN (inputs) AND status='COMMITTED'`` must hit every input (otherwise another
   run won: roll back, delete the outputs no catalog row names); the outputs are inserted
   as COMMITTED rows; the partition's counts and stats are recomputed from its committed
   files with an optimistic version check (a job committing into the partition at the
   same time makes one of the two retry; neither update is lost).
   The transaction is one numbered change of the table's file set
   (:mod:`datalake.catalog.snapshots`): the inputs get ``replaced_seq`` and the outputs
   ``committed_seq`` of that number, and one ``now`` as ``replaced_at`` / ``committed_at``,
   so a listing pinned to an earlier snapshot still sees exactly the inputs.
4. **Clean up**: the inputs' objects are deleted, then their REPLACED rows, by a later
   run's sweep once ``replaced_file_retention_seconds`` (default 900) have passed since
   ``replaced_at`` (a reader that listed the files before the swap can still read them;
   its snapshot is refused after that long), or at once when the setting is 0. Before
   deleting, the table's ``swept_seq`` is raised, so a snapshot that lists a deleted file
   is refused rather than served with a hole. A run that died between commit and
   clean-up leaves REPLACED rows; a later run sweeps them.

A re-run after success finds no candidates (the outputs are near the target size, or the
group's only small file); a re-run after a crash before the commit rewrites the same keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from datalake.catalog.db import session_scope
from datalake.catalog.models import (
    DataFile,
    DataLakePartition,
    DataLakeTable,
    IngestionJob,
    utcnow,
)
from datalake.catalog.snapshots import begin_change, mark_swept
from datalake.config import get_settings
from datalake.domain.formats import TableFormat
from datalake.engine.store import ObjectStore
from datalake.engine.writer import (
    MIN_ROW_GROUP_ROWS,
    column_stats,
    encode_footer,
    sha256_file,
)
from datalake.errors import CommitConflict, ConstraintConflict, DatalakeError, NotFound
from datalake.services import audit
from datalake.services.jobs import publish_iceberg
from datalake.services.partitions import (
    SMALL_FILE_FRACTION,
    get_partition,
    refresh_partition,
    target_bytes,
    validate_target_mb,
)
from datalake.services.tables import get_table
from datalake.services.verify import mark_corrupt

log = logging.getLogger(__name__)

#: A row group closes at this many rows whatever its size ...
MAX_ROW_GROUP_ROWS = 1_048_576
#: ... or once it holds this many bytes in memory (bounds a run's memory).
MAX_ROW_GROUP_BYTES = 64 * 2**20
#: Rows per batch read from an input file.
READ_BATCH_ROWS = 65_536
#: Input bytes merged at most in one go (one commit); bounds a merge's duration.
MAX_MERGE_INPUT_BYTES = 2 * 2**30
#: Attempts of the catalog commit when the partition row changes underneath.
COMMIT_ATTEMPTS = 6
#: Bumped when the output layout changes, so new runs never reuse old output keys.
LAYOUT_VERSION = "1"


# ------------------------------------------------------------------------- results


@dataclass
class CompactionSummary:
    """What a run did.

    ``files_before`` counts the committed files of the partitions looked at when the run
    started; ``files_after = files_before - files_replaced + files_written`` (files a job
    commits meanwhile are not counted). ``rows`` is the number of rows rewritten.
    """

    tables: int = 0
    partitions_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    files_replaced: int = 0
    files_written: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    conflicts: int = 0
    swept: int = 0
    #: inputs found not to match their checksums: marked CORRUPT, not merged
    corrupt: int = 0
    incomplete: bool = False
    errors: list[str] = field(default_factory=list)

    def add(self, other: CompactionSummary) -> None:
        """Add another run's figures to this one."""
        for name in (
            "tables", "partitions_compacted", "files_before", "files_after", "files_replaced",
            "files_written", "rows", "bytes_before", "bytes_after", "conflicts", "swept",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.incomplete = self.incomplete or other.incomplete
        self.errors.extend(other.errors)

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON-serialisable dict."""
        return {**self.__dict__, "errors": list(self.errors)}


@dataclass(frozen=True)
class _Input:
    id: str
    bucket: str
    key: str
    record_count: int
    size_bytes: int
    checksum: str


@dataclass
class _Unit:
    """Files of one partition that will be merged together."""

    partition_id: str
    partition_path: str
    partition_values: dict[str, Any]
    schema_version: int | None
    inputs: list[_Input]
    metadata: list[pq.FileMetaData] = field(default_factory=list)
    schema: pa.Schema | None = None


@dataclass(frozen=True)
class _Output:
    bucket: str
    key: str
    record_count: int
    size_bytes: int
    checksum: str
    column_stats: dict[str, Any]
    footer: str | None = None


@dataclass(frozen=True)
class _TableInfo:
    id: str
    compression: str
    target: int


class _InputsChanged(Exception):
    """Another run replaced some of the inputs first."""


# ------------------------------------------------------------------------- planning


def _table_info(table: DataLakeTable, override_mb: float | None) -> _TableInfo:
    compression = TableFormat.of(table.format).compression
    return _TableInfo(id=table.id, compression=compression, target=target_bytes(table, override_mb))


def _plan(
    table_id: str, partition_id: str | None, override_mb: float | None
) -> tuple[_TableInfo, list[_Unit], int]:
    """Read the catalog: the table's settings, the candidate groups, the files looked at."""
    with session_scope() as session:
        table = get_table(session, table_id)
        info = _table_info(table, override_mb)
        parts_q = select(DataLakePartition).where(DataLakePartition.table_id == table.id)
        if partition_id is not None:
            part = get_partition(session, partition_id)
            if part.table_id != table.id:
                raise NotFound(f"partition {partition_id} not found in table {table_id}")
            parts_q = parts_q.where(DataLakePartition.id == part.id)
        parts = {p.path: p for p in session.scalars(parts_q).all()}
        # A corrupted job's remaining files stay as they are: a retry rebuilds that job
        # by retiring exactly its own files, which a merge with other jobs' rows would undo.
        corrupted = select(IngestionJob.id).where(IngestionJob.corrupted_at.is_not(None))
        files_q = select(DataFile).where(
            DataFile.table_id == table.id,
            DataFile.status == "COMMITTED",
            or_(DataFile.job_id.is_(None), DataFile.job_id.not_in(corrupted)),
        )
        if partition_id is not None:
            files_q = files_q.where(DataFile.partition_path.in_(list(parts)))
        files = session.scalars(files_q.order_by(DataFile.key)).all()
        small = int(info.target * SMALL_FILE_FRACTION)
        groups: dict[tuple[str, int | None, str], list[DataFile]] = defaultdict(list)
        for f in files:
            if f.size_bytes < small and f.partition_path in parts:
                groups[(f.partition_path, f.schema_version, posixpath.dirname(f.key))].append(f)
        units = [
            _Unit(
                partition_id=parts[path].id,
                partition_path=path,
                partition_values=dict(parts[path].values or {}),
                schema_version=version,
                inputs=[
                    _Input(f.id, f.bucket, f.key, f.record_count, f.size_bytes, f.checksum)
                    for f in group
                ],
            )
            for (path, version, _dir), group in sorted(
                groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])
            )
            if len(group) >= 2
        ]
        return info, units, len(files)


def _schema_key(schema: pa.Schema) -> tuple[Any, ...]:
    return tuple(
        (f.name, str(f.type), f.nullable, tuple(sorted((f.metadata or {}).items())))
        for f in schema
    )


def _split_by_schema(unit: _Unit, store: ObjectStore) -> tuple[list[_Unit], list[str]]:
    """Check each input against its checksum, read the footers of the sound ones and split
    the unit into groups of identical schemas; also return the ids of altered inputs
    (never merged: a tampered file must not be carried into a new one)."""
    by_schema: dict[tuple[Any, ...], _Unit] = {}
    corrupt: list[str] = []
    for item in unit.inputs:
        with store.open_input(item.bucket, item.key) as f:
            data = f.read()  # inputs are small files (under half the target size)
        if hashlib.sha256(data).hexdigest() != item.checksum:
            log.warning("s3://%s/%s does not match its checksum: not merged", item.bucket,
                        item.key)
            corrupt.append(item.id)
            continue
        md = pq.read_metadata(pa.BufferReader(data))
        schema = md.schema.to_arrow_schema()
        sub = by_schema.setdefault(
            _schema_key(schema),
            _Unit(unit.partition_id, unit.partition_path, unit.partition_values,
                  unit.schema_version, [], [], schema),
        )
        sub.inputs.append(item)
        sub.metadata.append(md)
    merges = [chunk for u in by_schema.values() for chunk in _chunks(u) if len(chunk.inputs) >= 2]
    return merges, corrupt


def _chunks(unit: _Unit) -> list[_Unit]:
    """Cut a large unit into merges of at most ``MAX_MERGE_INPUT_BYTES`` of input each.

    Bounds the time one merge takes, so a run always makes progress before the Lambda
    times out. A last chunk of a single file joins the chunk before it.
    """
    chunks: list[_Unit] = []
    size = 0
    for item, md in zip(unit.inputs, unit.metadata, strict=True):
        if not chunks or size + item.size_bytes > MAX_MERGE_INPUT_BYTES:
            chunks.append(_Unit(unit.partition_id, unit.partition_path, unit.partition_values,
                                unit.schema_version, [], [], unit.schema))
            size = 0
        chunks[-1].inputs.append(item)
        chunks[-1].metadata.append(md)
        size += item.size_bytes
    if len(chunks) >= 2 and len(chunks[-1].inputs) == 1:
        last = chunks.pop()
        chunks[-1].inputs.extend(last.inputs)
        chunks[-1].metadata.extend(last.metadata)
    return chunks


# ------------------------------------------------------------------------- rewriting


def output_stem(unit_inputs: list[_Input], *, target: int, compression: str) -> str:
    """The deterministic name stem of a merge's outputs: a digest of inputs and settings."""
    raw = json.dumps(
        {
            "inputs": sorted([i.bucket, i.key, i.checksum] for i in unit_inputs),
            "target": target,
            "compression": compression,
            "row_groups": [MIN_ROW_GROUP_ROWS, MAX_ROW_GROUP_ROWS, MAX_ROW_GROUP_BYTES],
            "layout": LAYOUT_VERSION,
        },
        sort_keys=True,
    )
    return "part-compact-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def _batches(unit: _Unit, store: ObjectStore) -> Iterator[pa.RecordBatch]:
    """Every row of the unit's inputs, in key order, in bounded batches."""
    for item, md in zip(unit.inputs, unit.metadata, strict=True):
        with store.open_input(item.bucket, item.key) as f:
            pf = pq.ParquetFile(f, metadata=md)
            yield from pf.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False)


class _RollingWriter:
    """Writes row groups into files of about ``target`` bytes, uploading each when full."""

    def __init__(self, unit: _Unit, store: ObjectStore, *, table: _TableInfo, workdir: str) -> None:
        assert unit.schema is not None
        self.unit, self.store, self.table, self.workdir = unit, store, table, workdir
        self.schema = unit.schema
        self.folder = posixpath.dirname(unit.inputs[0].key)
        self.bucket = unit.inputs[0].bucket
        self.stem = output_stem(unit.inputs, target=table.target, compression=table.compression)
        self.total_rows = sum(i.record_count for i in unit.inputs)
        total_bytes = sum(i.size_bytes for i in unit.inputs)
        self.bytes_per_row = total_bytes / self.total_rows if self.total_rows else 0.0
        self.outputs: list[_Output] = []
        self.rows_done = 0
        self._writer: pq.ParquetWriter | None = None
        self._sink: Any = None
        self._path = ""
        self._rows_in_file = 0

    @property
    def keys(self) -> list[str]:
        return [o.key for o in self.outputs]

    def _key(self, n: int) -> str:
        name = f"{self.stem}-{n:04d}.parquet"
        return f"{self.folder}/{name}" if self.folder else name

    def _open(self) -> None:
        self._path = os.path.join(self.workdir, f"out-{len(self.outputs):04d}.parquet")
        self._sink = pa.OSFile(self._path, "wb")
        compression = None if self.table.compression == "none" else self.table.compression
        self._writer = pq.ParquetWriter(
            self._sink, self.schema, compression=compression, write_statistics=True
        )
        self._rows_in_file = 0

    def write_group(self, table: pa.Table) -> None:
        """Write one row group, then start a new file if this one is full."""
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._rows_in_file += table.num_rows
        self.rows_done += table.num_rows
        left = (self.total_rows - self.rows_done) * self.bytes_per_row
        if self._sink.tell() >= self.table.target and left >= self.table.target * 0.5:
            self.close_file()

    def room(self) -> float:
        """Bytes the current file may still take before it reaches the target."""
        written = self._sink.tell() if self._writer is not None else 0
        return max(self.table.target - written, 0)

    def close_file(self) -> None:
        """Finish the current file, checksum it, upload it and forget it locally."""
        if self._writer is None:
            return
        self._writer.close()
        self._sink.close()
        self._writer = None
        key = self._key(len(self.outputs))
        size = os.path.getsize(self._path)
        checksum = sha256_file(self._path)
        md = pq.read_metadata(self._path)
        self.store.put_file(self.bucket, key, self._path)
        os.unlink(self._path)
        self.outputs.append(
            _Output(self.bucket, key, self._rows_in_file, size, checksum, column_stats(md),
                    encode_footer(md))
        )


def _rewrite(unit: _Unit, store: ObjectStore, table: _TableInfo) -> list[_Output]:
    """Stream the unit's inputs into merged files; return the uploaded outputs."""
    workdir = tempfile.mkdtemp(prefix="dl-compact-")
    writer = _RollingWriter(unit, store, table=table, workdir=workdir)
    try:
        buffer: list[pa.RecordBatch] = []
        rows = nbytes = 0
        for batch in _batches(unit, store):
            if batch.num_rows == 0:
                continue
            buffer.append(batch)
            rows += batch.num_rows
            nbytes += batch.nbytes
            left_after = writer.total_rows - writer.rows_done - rows
            full = (
                rows >= MAX_ROW_GROUP_ROWS
                or nbytes >= MAX_ROW_GROUP_BYTES
                or rows * writer.bytes_per_row >= writer.room()
            )
            # A row group closes once it has the minimum rows and is full, but never
            # leaves a remainder below the minimum behind unless memory says so.
            if rows >= MIN_ROW_GROUP_ROWS and full and (
                left_after >= MIN_ROW_GROUP_ROWS or nbytes >= MAX_ROW_GROUP_BYTES
            ):
                writer.write_group(pa.Table.from_batches(buffer, schema=unit.schema))
                buffer, rows, nbytes = [], 0, 0
        if buffer:
            writer.write_group(pa.Table.from_batches(buffer, schema=unit.schema))
        writer.close_file()
        written = sum(o.record_count for o in writer.outputs)
        expected = sum(i.record_count for i in unit.inputs)
        if written != expected:
            raise DatalakeError(
                f"compaction of {unit.partition_path!r} read {written} rows, "
                f"the catalog says {expected}; nothing was committed"
            )
        return writer.outputs
    except BaseException:
        _discard(store, writer.bucket, writer.keys)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------- committing


def _commit(unit: _Unit, outputs: list[_Output], *, table_id: str, actor: str) -> int:
    """Publish the outputs and retire the inputs in one transaction, retrying conflicts.

    The transaction is one change of the table's file set (its number is returned): the
    inputs leave it and the outputs enter it at that number and at one timestamp.

    Raises
    ------
    _InputsChanged
        When some input is no longer COMMITTED (another run replaced it).
    CommitConflict
        When the partition kept changing for every attempt.
    """
    ids = [i.id for i in unit.inputs]
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            with session_scope() as session:
                # First: the table row's lock, before any partition row's (as Commit).
                change = begin_change(session, table_id)
                now = change.at
                result = session.execute(
                    update(DataFile)
                    .where(DataFile.id.in_(ids), DataFile.status == "COMMITTED")
                    .values(status="REPLACED", replaced_at=now, replaced_seq=change.seq)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != len(ids):  # type: ignore[attr-defined]
                    raise _InputsChanged(unit.partition_path)
                for o in outputs:
                    session.add(
                        DataFile(
                            table_id=table_id,
                            job_id=None,
                            batch_id=None,
                            partition_id=unit.partition_id,
                            partition_path=unit.partition_path,
                            partition_values=unit.partition_values,
                            bucket=o.bucket,
                            key=o.key,
                            record_count=o.record_count,
                            size_bytes=o.size_bytes,
                            checksum=o.checksum,
                            schema_version=unit.schema_version,
                            column_stats=o.column_stats,
                            footer=o.footer,
                            status="COMMITTED",
                            committed_at=now,
                            committed_seq=change.seq,
                        )
                    )
                session.flush()
                part = session.get(DataLakePartition, unit.partition_id)
                if part is None:
                    raise _InputsChanged(unit.partition_path)
                refresh_partition(session, part)
                audit.record(
                    session,
                    actor=actor,
                    action="partition.compact",
                    entity_type="partition",
                    entity_id=unit.partition_id,
                    details={
                        "table_id": table_id,
                        "path": unit.partition_path,
                        "replaced": [i.key for i in unit.inputs],
                        "written": [o.key for o in outputs],
                        "rows": sum(o.record_count for o in outputs),
                        "file_seq": change.seq,
                    },
                )
            return change.seq
        except (IntegrityError, ConstraintConflict) as e:
            # An output key is in the catalog already: a concurrent run with the same
            # inputs committed first (its inputs check would have failed us anyway).
            raise _InputsChanged(unit.partition_path) from e
        except CommitConflict:
            if attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(min(0.05 * 2**attempt, 1.0))
    raise AssertionError("unreachable")  # the last attempt returned or raised


def _discard(store: ObjectStore, bucket: str, keys: list[str]) -> None:
    """Delete uploaded outputs that no catalog row names (a winner's identical keys stay)."""
    if not keys:
        return
    with session_scope() as session:
        known = set(
            session.scalars(
                select(DataFile.key).where(DataFile.bucket == bucket, DataFile.key.in_(keys))
            ).all()
        )
    orphans = [k for k in keys if k not in known]
    if orphans:
        try:
            store.delete(bucket, orphans)
        except Exception:  # best effort: the objects are unreferenced either way
            log.exception("could not delete %d uncommitted compaction outputs", len(orphans))


def sweep_replaced(
    table_id: str, store: ObjectStore, *, retention_seconds: int | None = None
) -> int:
    """Delete the objects of a table's REPLACED files, then their rows; return how many.

    Only files replaced at least ``retention_seconds`` ago (default: the setting
    ``replaced_file_retention_seconds``) are swept, so a reader holding a listing (a
    snapshot) from before the swap can still read them. With a retention of 0 this
    finishes the work of a run that died between its commit and its clean-up.
    Idempotent.
    """
    if retention_seconds is None:
        retention_seconds = get_settings().replaced_file_retention_seconds
    # Iceberg first: every change up to now published (the sweep removes the rows a
    # late publish would need), and snapshots past the retention expired.
    try:
        publish_iceberg(table_id)
    except DatalakeError:
        log.warning("Iceberg publish of table %s failed; nothing swept", table_id,
                    exc_info=True)
        return 0
    _maintain_iceberg(table_id, retention_seconds)
    query = select(DataFile.id, DataFile.bucket, DataFile.key, DataFile.replaced_seq).where(
        DataFile.table_id == table_id, DataFile.status == "REPLACED"
    )
    if retention_seconds > 0:
        cutoff = utcnow() - timedelta(seconds=retention_seconds)
        # No replaced_at: replaced before retention existed (migration 0002).
        query = query.where(
            (DataFile.replaced_at.is_(None)) | (DataFile.replaced_at <= cutoff)
        )
    with session_scope() as session:
        rows = session.execute(query).all()
    if rows:
        return _delete_replaced(
            store,
            table_id,
            [(r.id, r.bucket, r.key) for r in rows],
            max(r.replaced_seq or 0 for r in rows),
            retention_seconds,
        )
    return 0


def _maintain_iceberg(table_id: str, retention_seconds: int) -> None:
    """Expire old Iceberg snapshots and delete orphaned metadata (best effort)."""
    from datalake.services import iceberg

    try:
        removed = iceberg.maintain_table(table_id, retention_seconds=retention_seconds)
        if removed:
            log.info("deleted %d orphaned Iceberg metadata files of %s", removed, table_id)
    except Exception:  # upkeep only: the next run tries again
        log.warning("Iceberg upkeep of table %s failed", table_id, exc_info=True)


def _not_in_iceberg(
    table_id: str, files: list[tuple[str, str, str]], retention_seconds: int, through_seq: int
) -> list[tuple[str, str, str]]:
    """The files no retained Iceberg snapshot lists, after expiring the snapshots older
    than ``retention_seconds`` (services/iceberg.py; all of them when Iceberg is off)."""
    from datalake.services import iceberg

    if not iceberg.enabled():
        return files
    referenced = iceberg.expire_snapshots(
        table_id, retention_seconds=retention_seconds, before_seq=through_seq
    )
    if referenced is None:
        return files
    return [f for f in files if f"s3://{f[1]}/{f[2]}" not in referenced]


def _delete_replaced(
    store: ObjectStore,
    table_id: str,
    files: list[tuple[str, str, str]],
    through_seq: int,
    retention_seconds: int = 0,
) -> int:
    """Delete replaced files (objects, then rows), once snapshots that list them are refused.

    ``through_seq`` is the highest ``replaced_seq`` among ``files``. Files that an
    Iceberg snapshot still lists (one younger than the retention period) stay for a
    later run: a reader of that snapshot can still read them.
    """
    files = _not_in_iceberg(table_id, files, retention_seconds, through_seq)
    if not files:
        return 0
    with session_scope() as session:
        mark_swept(session, table_id, through_seq)
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for _id, bucket, key in files:
        by_bucket[bucket].append(key)
    for bucket, keys in by_bucket.items():
        store.delete(bucket, keys)
    ids = [i for i, _b, _k in files]
    for start in range(0, len(ids), 500):
        with session_scope() as session:
            session.execute(
                delete(DataFile)
                .where(DataFile.id.in_(ids[start : start + 500]), DataFile.status == "REPLACED")
                .execution_options(synchronize_session=False)
            )
    return len(ids)


# ------------------------------------------------------------------------- entry points


def compact_table(
    table_id: str,
    *,
    store: ObjectStore,
    partition_id: str | None = None,
    target_file_size_mb: float | None = None,
    deadline: float | None = None,
    actor: str = "system:optimize",
) -> CompactionSummary:
    """Compact the small files of a table (or of one of its partitions).

    Parameters
    ----------
    table_id:
        A live table.
    store:
        Where the data files live (S3 in production).
    partition_id:
        Only this partition of the table.
    target_file_size_mb:
        Overrides ``table.format.target_file_size_mb`` for this run.
    deadline:
        A :func:`time.monotonic` instant after which no new merge starts (a Lambda
        stops before its timeout); the summary then says ``incomplete``.
    actor:
        Who asked, for the audit trail.

    Returns
    -------
    CompactionSummary
        What was merged. A merge that failed is listed in ``errors`` (nothing of it is
        committed) and the run goes on with the next partition.

    Raises
    ------
    NotFound
        When the table or the partition does not exist.
    InvalidInput
        For a bad ``target_file_size_mb``.
    """
    override = validate_target_mb(target_file_size_mb)
    summary = CompactionSummary(tables=1)
    info, units, looked_at = _plan(table_id, partition_id, override)
    retention = get_settings().replaced_file_retention_seconds
    summary.swept = sweep_replaced(table_id, store, retention_seconds=retention)
    summary.files_before = looked_at
    compacted: set[str] = set()
    doomed: list[tuple[list[tuple[str, str, str]], int]] = []
    for candidate in units:
        try:
            merges, corrupt = _split_by_schema(candidate, store)
        except Exception as e:
            log.exception("cannot read the footers of %s", candidate.partition_path)
            summary.errors.append(f"{candidate.partition_path}: {type(e).__name__}: {e}")
            continue
        if corrupt:  # out of the table, its job marked for a retry (services/verify.py)
            summary.corrupt += len(mark_corrupt(info.id, corrupt).files)
        for unit in merges:
            if deadline is not None and time.monotonic() >= deadline:
                summary.incomplete = True
                break
            try:
                outputs = _rewrite(unit, store, info)
            except Exception as e:
                log.exception("rewrite of %s failed", unit.partition_path)
                summary.errors.append(f"{unit.partition_path}: {type(e).__name__}: {e}")
                continue
            try:
                seq = _commit(unit, outputs, table_id=info.id, actor=actor)
            except (_InputsChanged, CommitConflict) as e:
                log.warning("compaction of %s lost a race: %s", unit.partition_path, e)
                summary.conflicts += 1
                _discard(store, outputs[0].bucket if outputs else "", [o.key for o in outputs])
                continue
            except Exception as e:
                log.exception("commit of %s failed", unit.partition_path)
                summary.errors.append(f"{unit.partition_path}: {type(e).__name__}: {e}")
                _discard(store, outputs[0].bucket if outputs else "", [o.key for o in outputs])
                continue
            # Committed: the inputs are out of the current snapshot. Readers of older
            # snapshots keep them for the retention period (a later run's sweep removes
            # them then); only a retention of 0 removes them at once, after the run's
            # Iceberg publish below (Iceberg's current snapshot lists them until then).
            if retention <= 0:
                doomed.append(([(i.id, i.bucket, i.key) for i in unit.inputs], seq))
            compacted.add(unit.partition_id)
            summary.files_replaced += len(unit.inputs)
            summary.files_written += len(outputs)
            summary.rows += sum(o.record_count for o in outputs)
            summary.bytes_before += sum(i.size_bytes for i in unit.inputs)
            summary.bytes_after += sum(o.size_bytes for o in outputs)
        if summary.incomplete:
            break
    if compacted:
        try:  # the run's merges, as one Iceberg replace snapshot (services/iceberg.py)
            publish_iceberg(info.id)
        except DatalakeError as e:  # committed; the next publish of the table catches up
            log.warning("Iceberg publish after compacting table %s failed", info.id)
            summary.errors.append(f"Iceberg publish: {e}")
            doomed = []
    for files, seq in doomed:
        try:
            _delete_replaced(store, info.id, files, seq)
        except Exception:  # the next run's sweep finishes it
            log.exception("could not delete the replaced files of table %s", info.id)
    summary.partitions_compacted = len(compacted)
    summary.files_after = summary.files_before - summary.files_replaced + summary.files_written
    return summary


def live_table_ids() -> list[str]:
    """Ids of every live (not soft-deleted) table."""
    with session_scope() as session:
        return list(
            session.scalars(
                select(DataLakeTable.id)
                .where(DataLakeTable.deleted_at.is_(None))
                .order_by(DataLakeTable.created_at)
            ).all()
        )


def compact_all(
    *,
    store: ObjectStore,
    target_file_size_mb: float | None = None,
    deadline: float | None = None,
    actor: str = "system:optimize",
) -> CompactionSummary:
    """Compact every live table (the scheduled run); stops early at ``deadline``."""
    summary = CompactionSummary()
    for table_id in live_table_ids():
        if deadline is not None and time.monotonic() >= deadline:
            summary.incomplete = True
            break
        try:
            summary.add(
                compact_table(
                    table_id,
                    store=store,
                    target_file_size_mb=target_file_size_mb,
                    deadline=deadline,
                    actor=actor,
                )
            )
        except DatalakeError as e:  # e.g. deleted since it was listed
            summary.errors.append(f"table {table_id}: {e}")
    return summary
