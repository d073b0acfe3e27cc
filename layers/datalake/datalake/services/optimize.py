"""An optimize run: compact one table (an API request) or, on the schedule, every table.

The scheduled run first finishes the clean-up of failed jobs and re-reads committed files
against their checksums, so a corrupt file leaves its table (its job marked for a retry)
before anything merges it.
"""

from __future__ import annotations

import logging
from typing import Any

from datalake.engine.store import ObjectStore
from datalake.errors import DatalakeError, NotFound
from datalake.services.compaction import (
    CompactionSummary,
    compact_all,
    compact_table,
    live_table_ids,
)
from datalake.services.jobs import clean_up_finished_jobs, publish_iceberg
from datalake.services.verify import verify_tables

log = logging.getLogger(__name__)

__all__ = ["optimize", "publish"]


def publish(table_id: str) -> dict[str, Any]:
    """Publish a table's committed catalog changes as Iceberg now (the API's request
    after a verification took files out: the API itself carries no pyiceberg).

    Raises
    ------
    TransientError
        When Iceberg could not be brought up to date (the caller may retry).
    """
    publish_iceberg(table_id)
    return {"table_id": table_id, "status": "PUBLISHED"}


def optimize(
    table_id: str | None,
    *,
    store: ObjectStore,
    partition_id: str | None = None,
    target_file_size_mb: float | None = None,
    deadline: float | None = None,
    actor: str = "system:optimize",
) -> dict[str, Any]:
    """Compact ``table_id`` (or one of its partitions), or every live table when None.

    Parameters
    ----------
    table_id:
        The table; None for the scheduled run over every table.
    store:
        Where the data files live.
    partition_id, target_file_size_mb, deadline, actor:
        As for :func:`~datalake.services.compaction.compact_table`.

    Returns
    -------
    dict
        ``{"table_id", "status", **summary}``: status ``DONE``, ``PARTIAL`` (the deadline
        came first) or ``NOT_FOUND`` (the table was deleted since the request; a retry
        cannot help, so it is no error).

    Raises
    ------
    DatalakeError
        When a merge failed (listed in ``details``): the caller's retry (Lambda retries a
        failed asynchronous invocation) re-runs it, which is idempotent.
    """
    if table_id:
        try:
            summary = compact_table(
                table_id, store=store, partition_id=partition_id,
                target_file_size_mb=target_file_size_mb, deadline=deadline, actor=actor,
            )
        except NotFound as e:
            log.warning("nothing to optimize", extra={"table_id": table_id, "error": str(e)})
            return {"table_id": table_id, "status": "NOT_FOUND", "error": str(e)}
    else:
        summary = _scheduled(store, target_file_size_mb=target_file_size_mb, deadline=deadline,
                             actor=actor)
    out = {"table_id": table_id, "status": "PARTIAL" if summary.incomplete else "DONE",
           **summary.to_json()}
    log.info("optimized", extra={"summary": out})
    if summary.errors:
        raise DatalakeError(f"compaction failed for {len(summary.errors)} merge(s)",
                            details=summary.errors)
    return out


def _scheduled(store: ObjectStore, *, target_file_size_mb: float | None,
               deadline: float | None, actor: str) -> CompactionSummary:
    cleaned = clean_up_finished_jobs(store)
    if cleaned:
        log.info("finished the clean-up of jobs", extra={"jobs": cleaned})
    for report in verify_tables(live_table_ids(), store, deadline=deadline,
                                publish=publish_iceberg):
        if report.corrupt or report.missing:
            log.warning("verification found damaged files", extra=report.__dict__)
    return compact_all(store=store, target_file_size_mb=target_file_size_mb, deadline=deadline,
                       actor=actor)
