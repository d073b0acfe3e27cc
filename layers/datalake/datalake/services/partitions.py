"""Partitions, control plane: register, list, refresh stats, request compaction (no pyarrow).

A partition row carries the roll-up of its COMMITTED data files: ``record_count``,
``file_count``, ``size_bytes`` and per-column ``stats`` (``{"min", "max",
"null_count"}``). Ingestion commits add to it; :func:`refresh_partition` recomputes it
from the files, optimistically (``UPDATE ... WHERE version = :expected``), so it can run
beside a committing job without losing either update.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Protocol

from datalake.catalog.models import DataFile, DataLakePartition, DataLakeTable, new_id
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.domain import file_sizes
from datalake.domain.file_sizes import (
    MAX_TARGET_MB,
    MIN_TARGET_MB,
    SMALL_FILE_FRACTION,
    small_file_bytes,
    validate_target_mb,
)
from datalake.domain.limits import PARTITION_PATH_MAX
from datalake.domain.partitioning import PartitionField, parse_partitioning, range_names
from datalake.domain.stats import merge_stats
from datalake.errors import (  # CompactionUnavailable: re-exported for request_compaction's callers
    CommitConflict,
    CompactionUnavailable,
    Conflict,
    InvalidInput,
    NotFound,
)
from datalake.services import audit
from datalake.services.jobs import partition_path
from datalake.services.tables import get_table

__all__ = [
    "MAX_TARGET_MB",
    "MIN_TARGET_MB",
    "SMALL_FILE_FRACTION",
    "CompactionRequester",
    "CompactionUnavailable",
    "compaction_candidates",
    "get_partition",
    "list_partitions",
    "normalise_values",
    "partition_files",
    "recompute_stats",
    "refresh_partition",
    "register_partition",
    "request_compaction",
    "target_bytes",
    "validate_target_mb",
]


class CompactionRequester(Protocol):
    """Starts a compaction run asynchronously (the optimize Lambda, invoked as an Event)."""

    def request(self, payload: dict[str, Any]) -> str | None:
        """Queue the run described by ``payload`` and return a request id, if any."""
        ...


# ------------------------------------------------------------------------- values
# Values take the form the ingest engine records (the rules of datalake.domain.partitioning):
# Iceberg's human strings, ``None`` for the null partition.

_TEMPORAL_FORMATS = {
    "year": ("%Y", r"^\d{4}$"),
    "month": ("%Y-%m", r"^\d{4}-\d{2}$"),
    "day": ("%Y-%m-%d", r"^\d{4}-\d{2}-\d{2}$"),
    "hour": ("%Y-%m-%d-%H", r"^\d{4}-\d{2}-\d{2}-\d{2}$"),
}


def _human(pf: PartitionField, value: Any) -> str | None:
    """The engine's string form of one partition value, validated against its transform."""
    name, t = pf.path_name, pf.parsed
    if value is None:
        return None
    if isinstance(value, dict | list) or (isinstance(value, float) and not math.isfinite(value)):
        raise InvalidInput(f"partition value of {name!r} must be a string, a number or null")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and t.kind == "identity":
        text = repr(value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    if t.kind in _TEMPORAL_FORMATS:
        fmt, pattern = _TEMPORAL_FORMATS[t.kind]
        try:
            ok = re.match(pattern, text) is not None and bool(datetime.strptime(text, fmt))
        except ValueError:
            ok = False
        if not ok:
            example = datetime(2013, 1, 31, 5).strftime(fmt)
            raise InvalidInput(f"partition value of {name!r} must look like {example!r}")
    elif t.kind == "bucket":
        assert t.param is not None
        if not text.isdigit() or not 0 <= int(text) < t.param:
            raise InvalidInput(f"partition value of {name!r} must be a bucket in [0, {t.param})")
        text = str(int(text))
    elif t.kind == "range":
        names = range_names(t.bounds)
        if text not in names:
            raise InvalidInput(f"partition value of {name!r} must be one of {names}")
    elif t.kind == "void":
        return None
    return text


def normalise_values(table: DataLakeTable, values: Any) -> dict[str, str | None]:
    """Check partition values against the table's spec and put them in the engine's form.

    Parameters
    ----------
    table:
        The table whose partition spec the values must match.
    values:
        ``{partition field name: value}``, one entry per spec field; ``null`` is the null
        partition.

    Returns
    -------
    dict
        The values as the ingest engine records them (Iceberg's human strings, e.g.
        ``"2013-01-31"`` for ``day``), in spec order.

    Raises
    ------
    InvalidInput
        When the names differ from the spec's fields or a value does not fit its transform.
    """
    if not isinstance(values, dict):
        raise InvalidInput("values must be an object of {partition field: value}")
    spec = parse_partitioning(table.partitioning)
    names = [pf.path_name for pf in spec]
    missing = [n for n in names if n not in values]
    unknown = sorted(str(k) for k in values if k not in names)
    if missing or unknown:
        raise InvalidInput(
            f"values must name exactly the partition fields {names}",
            details={"missing": missing, "unknown": unknown},
        )
    return {pf.path_name: _human(pf, values[pf.path_name]) for pf in spec}


# ------------------------------------------------------------------------- use cases


def register_partition(
    session: Session, *, table_id: str, values: Any, actor: str = "system",
    correlation_id: str | None = None,
) -> DataLakePartition:
    """Register an (empty) partition of a live table (audited as ``partition.create``).

    Raises
    ------
    NotFound
        When the table does not exist or is deleted.
    InvalidInput
        When ``values`` does not match the table's partition spec.
    Conflict
        When the partition exists already.
    """
    table = get_table(session, table_id)
    ordered = normalise_values(table, values)
    path = partition_path(ordered)
    if len(path) > PARTITION_PATH_MAX:
        raise InvalidInput(
            f"partition values make a path of {len(path)} characters; at most "
            f"{PARTITION_PATH_MAX} fit in an object key beside the table's prefix"
        )
    catalog = SqlCatalog(session)
    if catalog.partition_by_path(table.id, path) is not None:
        raise Conflict(f"partition {path or '(unpartitioned)'} of table {table_id} exists")
    part = DataLakePartition(table_id=table.id, path=path, values=ordered, stats={})
    with catalog.savepoint():  # a concurrent insert's win leaves the caller's change intact
        catalog.insert(part, conflict=f"partition {path} of table {table_id} exists")
    audit.record(session, actor=actor, action="partition.create", entity_type="partition",
                 entity_id=part.id, details={"table_id": part.table_id, "path": part.path},
                 correlation_id=correlation_id)
    return part


def get_partition(session: Session, partition_id: str) -> DataLakePartition:
    """Return a partition of a live table by id; raise NotFound otherwise."""
    part = SqlCatalog(session).get(DataLakePartition, partition_id)
    if part is None:
        raise NotFound(f"partition {partition_id} not found")
    get_table(session, part.table_id)
    return part


def list_partitions(
    session: Session, table_id: str, *, limit: int = 100, offset: int = 0
) -> tuple[list[DataLakePartition], int]:
    """A live table's partitions in path order, and their total count."""
    get_table(session, table_id)
    return SqlCatalog(session).page_partitions(table_id, limit=limit, offset=offset)


def partition_files(session: Session, part: DataLakePartition) -> list[DataFile]:
    """The COMMITTED data files of a partition (by id, or by path for older rows)."""
    return SqlCatalog(session).partition_files(part)


def refresh_partition(session: Session, part: DataLakePartition) -> DataLakePartition:
    """Recompute a partition's counts and column stats from its committed files.

    The update is optimistic: it applies only if the partition row still has the version
    read, so a job committing into the partition meanwhile is never overwritten.

    Raises
    ------
    CommitConflict
        When the partition changed concurrently; the caller retries.
    """
    files = partition_files(session, part)
    updated = SqlCatalog(session).compare_and_set(
        part,
        record_count=sum(f.record_count for f in files),
        file_count=len(files),
        size_bytes=sum(f.size_bytes for f in files),
        stats=merge_stats({}, [f.column_stats for f in files]),
    )
    if not updated:
        raise CommitConflict(f"partition {part.path} changed concurrently")
    return part


def recompute_stats(
    session: Session, partition_id: str, *, actor: str = "system",
    correlation_id: str | None = None,
) -> DataLakePartition:
    """Recompute a partition's stats from the catalog's committed file rows (no I/O on S3).

    Audited as ``partition.stats``.

    Raises
    ------
    NotFound
        When the partition or its table does not exist.
    CommitConflict
        When the partition changed while it was being recomputed.
    """
    part = refresh_partition(session, get_partition(session, partition_id))
    audit.record(session, actor=actor, action="partition.stats", entity_type="partition",
                 entity_id=part.id, correlation_id=correlation_id,
                 details={"table_id": part.table_id, "record_count": part.record_count,
                          "file_count": part.file_count})
    return part


def target_bytes(table: DataLakeTable, override_mb: float | None = None) -> int:
    """The target file size of a table in bytes (an override wins over ``table.format``)."""
    return file_sizes.target_bytes(table.format, override_mb)


def compaction_candidates(
    session: Session, table_id: str, *, target: int, partition_id: str | None = None
) -> list[str]:
    """Paths of the partitions holding at least two committed files below half ``target``."""
    path = get_partition(session, partition_id).path if partition_id is not None else None
    return SqlCatalog(session).small_file_partitions(
        table_id, below_bytes=small_file_bytes(target), path=path
    )


def request_compaction(
    session: Session,
    table_id: str,
    *,
    requester: CompactionRequester,
    target_file_size_mb: Any = None,
    partition_id: str | None = None,
    actor: str = "system",
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """Validate a compaction request and hand it to the optimize function asynchronously.

    Returns
    -------
    dict
        ``{"table_id", "status": "ACCEPTED", "partition_id", "target_file_size_mb",
        "request_id", "partitions_to_compact", "run_id"}``; ``partitions_to_compact`` is
        what the catalog shows now (the run decides again when it starts); ``run_id``
        names the run for :func:`optimize_run`.

    Raises
    ------
    NotFound
        When the table (or the partition, or the partition in this table) does not exist.
    InvalidInput
        For a bad ``target_file_size_mb``.
    CompactionUnavailable
        When the optimize function cannot be invoked.
    """
    table = get_table(session, table_id)
    override = validate_target_mb(target_file_size_mb)
    if partition_id is not None:
        part = get_partition(session, partition_id)
        if part.table_id != table.id:
            raise NotFound(f"partition {partition_id} not found in table {table_id}")
    candidates = compaction_candidates(
        session, table.id, target=target_bytes(table, override), partition_id=partition_id
    )
    # Names the run: its end is recorded under it (see optimize_run), so a caller can wait.
    run_id = new_id()
    payload: dict[str, Any] = {
        "table_id": table.id,
        "partition_id": partition_id,
        "target_file_size_mb": override,
        "requested_by": actor,
        "correlation_id": correlation_id,
        "run_id": run_id,
    }
    request_id = requester.request(payload)
    accepted = {
        "table_id": table.id,
        "status": "ACCEPTED",
        "partition_id": partition_id,
        "target_file_size_mb": file_sizes.target_mb(table.format, override),
        "request_id": request_id,
        "partitions_to_compact": len(candidates),
        "run_id": run_id,
    }
    audit.record(session, actor=actor, action=OPTIMIZE_ASKED, entity_type="table",
                 entity_id=table.id, correlation_id=correlation_id,
                 details={k: v for k, v in accepted.items() if k != "status"})
    return accepted


#: The audit actions of an optimize run: asked for (by the API), and finished (by the run).
OPTIMIZE_ASKED = "table.optimize"
OPTIMIZE_FINISHED = "table.optimize.finished"
#: Finished runs of a table searched for one run id (newest first).
_RUNS_SEARCHED = 1000


def optimize_run(session: Session, table_id: str, run_id: str) -> dict[str, Any]:
    """Where an optimize run of the table is: ``{"table_id", "run_id", "status", ...}``.

    ``status`` is ``ACCEPTED`` until the run records its end, then the run's own
    (``DONE``, ``PARTIAL``, ``FAILED``, ``NOT_FOUND``) with its summary (files before and
    after, merges, ...). A failed run may be retried by Lambda; the latest end counts.

    Raises
    ------
    NotFound
        When no optimize run of that id was asked for on the table.
    """
    catalog = SqlCatalog(session)
    for action in (OPTIMIZE_FINISHED, OPTIMIZE_ASKED):
        events, _ = catalog.audit_events_page(
            action=action, entity_id=table_id, limit=_RUNS_SEARCHED, offset=0
        )
        for event in events:
            details = dict(event.details or {})
            if details.get("run_id") == run_id:
                status = details.pop("status", None) if action == OPTIMIZE_FINISHED else None
                return {**details, "table_id": table_id, "run_id": run_id,
                        "status": status or "ACCEPTED", "at": event.at}
    raise NotFound(f"no optimize run {run_id} of table {table_id}")
