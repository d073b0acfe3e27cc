"""Compaction: merge a partition's small committed files into files near the target size.

Runs in the optimize Lambda (pyarrow is allowed here, never in the API). A run, per
table, in four parts:

1. **Plan** (read-only; :func:`_plan`, grouping in :mod:`datalake.domain.compaction`):
   the partition's COMMITTED files smaller than half the target size are candidates,
   grouped by partition, ``schema_version`` and folder; a group needs at least two files.
   :func:`datalake.engine.rewrite.split_by_schema` then checks each input's checksum and
   splits the group by exact Parquet schema, in chunks of at most
   ``MAX_MERGE_INPUT_BYTES`` of input (each its own commit), so a run always makes
   progress.
2. **Rewrite** (:func:`datalake.engine.rewrite.rewrite`): the inputs are streamed into
   files near the target size (the ingest engine's rolling writer), compression from
   ``table.format``, with deterministic keys under the inputs' folder,
   ``part-compact-<sha of inputs and settings>-<n>.parquet``, checksums and column
   statistics; they are uploaded before any catalog change.
3. **Commit** (:func:`_commit`), in one catalog transaction: the inputs move from
   COMMITTED to REPLACED only if every one still is (otherwise another run won: roll
   back, delete the outputs no catalog row names); the outputs are inserted as COMMITTED
   rows; the partition's counts and stats are recomputed from its committed files with
   an optimistic version check (a job committing into the partition at the same time
   makes one of the two retry; neither update is lost). The transaction is one numbered
   change of the table's file set (:mod:`datalake.catalog.snapshots`): the inputs get
   ``replaced_seq`` and the outputs ``committed_seq`` of that number, and one ``now`` as
   ``replaced_at`` / ``committed_at``, so a listing pinned to an earlier snapshot still
   sees exactly the inputs.
4. **Sweep** (:mod:`datalake.services.sweep`): the inputs' objects, then their rows, are
   deleted by a later run once the retention has passed, or at once with a retention of 0.

A re-run after success finds no candidates (the outputs are near the target size, or the
group's only small file); a re-run after a crash before the commit rewrites the same keys.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, DataLakePartition, DataLakeTable
from datalake.catalog.snapshots import begin_change
from datalake.catalog.sql_catalog import SqlCatalog
from datalake.config import get_settings
from datalake.domain.compaction import (
    MAX_MERGE_INPUT_BYTES,
    MergeGroup,
    PartitionRef,
    group_small_files,
)
from datalake.domain.file_sizes import small_file_bytes, validate_target_mb
from datalake.domain.formats import TableFormat
from datalake.domain.vocabulary import FileStatus
from datalake.engine.rewrite import Merge, rewrite, split_by_schema
from datalake.engine.store import ObjectStore
from datalake.engine.writer import MIN_ROW_GROUP_ROWS, WrittenFile
from datalake.errors import CommitConflict, ConstraintConflict, DatalakeError, NotFound
from datalake.services import audit
from datalake.services.jobs import publish_iceberg
from datalake.services.partitions import (
    CompactionUnavailable,
    get_partition,
    refresh_partition,
    target_bytes,
)
from datalake.services.sweep import SweptFile, delete_replaced, sweep_replaced
from datalake.services.tables import get_table
from datalake.services.verify import mark_corrupt

__all__ = [
    "MAX_MERGE_INPUT_BYTES",
    "MIN_ROW_GROUP_ROWS",
    "CompactionSummary",
    "CompactionUnavailable",
    "compact_all",
    "compact_table",
    "live_table_ids",
    "sweep_replaced",
]

log = logging.getLogger(__name__)

#: Attempts of the catalog commit when the partition row changes underneath.
COMMIT_ATTEMPTS = 6


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
) -> tuple[_TableInfo, list[MergeGroup], int]:
    """Read the catalog: the table's settings, the candidate groups, the files looked at."""
    with session_scope() as session:
        catalog = SqlCatalog(session)
        table = get_table(session, table_id)
        info = _table_info(table, override_mb)
        if partition_id is not None:
            part = get_partition(session, partition_id)
            if part.table_id != table.id:
                raise NotFound(f"partition {partition_id} not found in table {table_id}")
        parts = {
            p.path: PartitionRef(p.id, p.path, dict(p.values or {}))
            for p in catalog.partitions_of(table.id, partition_id=partition_id)
        }
        # A corrupted job's remaining files stay as they are: a retry rebuilds that job
        # by retiring exactly its own files, which a merge with other jobs' rows would undo.
        files = catalog.committed_files(
            table.id,
            partition_paths=list(parts) if partition_id is not None else None,
            skip_corrupted_jobs=True,
        )
        groups = group_small_files(files, parts, small=small_file_bytes(info.target))
        return info, groups, len(files)


# ------------------------------------------------------------------------- rewriting


def _rewrite(merge: Merge, store: ObjectStore, table: _TableInfo) -> list[WrittenFile]:
    """Rewrite one merge's inputs into uploaded outputs (none left behind on failure)."""
    return rewrite(
        merge,
        store,
        target=table.target,
        compression=table.compression,
        discard=lambda bucket, keys: _discard(store, bucket, keys),
    )


def _discard(store: ObjectStore, bucket: str, keys: list[str]) -> None:
    """Delete uploaded outputs that no catalog row names (a winner's identical keys stay)."""
    if not keys:
        return
    with session_scope() as session:
        known = SqlCatalog(session).recorded_keys(bucket, keys)
    orphans = [k for k in keys if k not in known]
    if orphans:
        try:
            store.delete(bucket, orphans)
        except Exception:  # best effort: the objects are unreferenced either way
            log.exception("could not delete %d uncommitted compaction outputs", len(orphans))


# ------------------------------------------------------------------------- committing


def _commit(merge: Merge, outputs: list[WrittenFile], *, table_id: str, actor: str) -> int:
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
    ids = [i.id for i in merge.inputs]
    bucket = merge.inputs[0].bucket
    partition = merge.partition
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            with session_scope() as session:
                catalog = SqlCatalog(session)
                # First: the table row's lock, before any partition row's (as Commit).
                change = begin_change(session, table_id)
                now = change.at
                replaced = catalog.retire_committed(
                    ids, status=FileStatus.REPLACED, replaced_at=now, replaced_seq=change.seq
                )
                if replaced != len(ids):
                    raise _InputsChanged(partition.path)
                for o in outputs:
                    catalog.add(
                        DataFile(
                            table_id=table_id,
                            job_id=None,
                            batch_id=None,
                            partition_id=partition.id,
                            partition_path=partition.path,
                            partition_values=partition.values,
                            bucket=bucket,
                            key=o.key,
                            record_count=o.record_count,
                            size_bytes=o.size_bytes,
                            checksum=o.checksum,
                            schema_version=merge.schema_version,
                            column_stats=o.column_stats,
                            footer=o.footer,
                            status=FileStatus.COMMITTED,
                            committed_at=now,
                            committed_seq=change.seq,
                        )
                    )
                catalog.flush()
                part = catalog.get(DataLakePartition, partition.id)
                if part is None:
                    raise _InputsChanged(partition.path)
                refresh_partition(session, part)
                audit.record(
                    session,
                    actor=actor,
                    action="partition.compact",
                    entity_type="partition",
                    entity_id=partition.id,
                    details={
                        "table_id": table_id,
                        "path": partition.path,
                        "replaced": [i.key for i in merge.inputs],
                        "written": [o.key for o in outputs],
                        "rows": sum(o.record_count for o in outputs),
                        "file_seq": change.seq,
                    },
                )
            return change.seq
        except ConstraintConflict as e:
            # An output key is in the catalog already: a concurrent run with the same
            # inputs committed first (its inputs check would have failed us anyway).
            raise _InputsChanged(partition.path) from e
        except CommitConflict:
            if attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(min(0.05 * 2**attempt, 1.0))
    raise AssertionError("unreachable")  # the last attempt returned or raised


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
    info, groups, looked_at = _plan(table_id, partition_id, override)
    retention = get_settings().replaced_file_retention_seconds
    summary.swept = sweep_replaced(table_id, store, retention_seconds=retention)
    summary.files_before = looked_at
    compacted: set[str] = set()
    doomed: list[tuple[list[SweptFile], int]] = []
    for group in groups:
        try:
            merges, corrupt = split_by_schema(group, store, max_merge_bytes=MAX_MERGE_INPUT_BYTES)
        except Exception as e:
            log.exception("cannot read the footers of %s", group.partition.path)
            summary.errors.append(f"{group.partition.path}: {type(e).__name__}: {e}")
            continue
        if corrupt:  # out of the table, its job marked for a retry (services/verify.py)
            summary.corrupt += len(mark_corrupt(info.id, corrupt).files)
        for merge in merges:
            if deadline is not None and time.monotonic() >= deadline:
                summary.incomplete = True
                break
            try:
                outputs = _rewrite(merge, store, info)
            except Exception as e:
                log.exception("rewrite of %s failed", merge.partition.path)
                summary.errors.append(f"{merge.partition.path}: {type(e).__name__}: {e}")
                continue
            bucket = merge.inputs[0].bucket
            try:
                seq = _commit(merge, outputs, table_id=info.id, actor=actor)
            except (_InputsChanged, CommitConflict) as e:
                log.warning("compaction of %s lost a race: %s", merge.partition.path, e)
                summary.conflicts += 1
                _discard(store, bucket, [o.key for o in outputs])
                continue
            except Exception as e:
                log.exception("commit of %s failed", merge.partition.path)
                summary.errors.append(f"{merge.partition.path}: {type(e).__name__}: {e}")
                _discard(store, bucket, [o.key for o in outputs])
                continue
            # Committed: the inputs are out of the current snapshot. Readers of older
            # snapshots keep them for the retention period (a later run's sweep removes
            # them then); only a retention of 0 removes them at once, after the run's
            # Iceberg publish below (Iceberg's current snapshot lists them until then).
            if retention <= 0:
                doomed.append(([(i.id, i.bucket, i.key) for i in merge.inputs], seq))
            compacted.add(merge.partition.id)
            summary.files_replaced += len(merge.inputs)
            summary.files_written += len(outputs)
            summary.rows += sum(o.record_count for o in outputs)
            summary.bytes_before += sum(i.size_bytes for i in merge.inputs)
            summary.bytes_after += sum(o.size_bytes for o in outputs)
        if summary.incomplete:
            break
    if compacted or summary.corrupt:
        # The run's merges, as one Iceberg replace snapshot (services/iceberg.py), and
        # corrupt inputs it took out, so no Iceberg reader is sent to them.
        try:
            publish_iceberg(info.id)
        except DatalakeError as e:  # committed; the next publish of the table catches up
            log.warning("Iceberg publish after compacting table %s failed", info.id)
            summary.errors.append(f"Iceberg publish: {e}")
            doomed = []
    for files, seq in doomed:
        try:
            delete_replaced(store, info.id, files, seq)
        except Exception:  # the next run's sweep finishes it
            log.exception("could not delete the replaced files of table %s", info.id)
    summary.partitions_compacted = len(compacted)
    summary.files_after = summary.files_before - summary.files_replaced + summary.files_written
    return summary


def live_table_ids() -> list[str]:
    """Ids of every live (not soft-deleted) table."""
    with session_scope() as session:
        return SqlCatalog(session).live_table_ids()


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
