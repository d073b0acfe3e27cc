"""An optimize run: compact one table (an API request) or, on the schedule, every table.

The scheduled run first finishes the clean-up of failed jobs and re-reads committed files
against their checksums, so a corrupt file leaves its table (its job marked for a retry)
before anything merges it.
"""

from __future__ import annotations

import logging
from typing import Any

from datalake.catalog.db import session_scope
from datalake.engine.store import ObjectStore
from datalake.errors import DatalakeError, NotFound
from datalake.services import audit
from datalake.services.compaction import (
    CompactionSummary,
    compact_all,
    compact_table,
    live_table_ids,
)
from datalake.services.jobs import clean_up_finished_jobs, publish_iceberg
from datalake.services.partitions import OPTIMIZE_FINISHED
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
    run_id: str | None = None,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """Compact ``table_id`` (or one of its partitions), or every live table when None.

    A table's run records its end (status and summary) in the audit trail under
    ``run_id``, which :func:`~datalake.services.partitions.optimize_run` reads back.

    Parameters
    ----------
    table_id:
        The table; None for the scheduled run over every table.
    store:
        Where the data files live.
    partition_id, target_file_size_mb, deadline, actor:
        As for :func:`~datalake.services.compaction.compact_table`.
    run_id, correlation_id:
        The API's name for the run and its request's correlation id (none on a schedule).

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
            missing: dict[str, Any] = {"table_id": table_id, "status": "NOT_FOUND",
                                       "error": str(e)}
            _record_end(missing, run_id, actor, correlation_id)
            return missing
    else:
        summary = _scheduled(store, target_file_size_mb=target_file_size_mb, deadline=deadline,
                             actor=actor)
    out = {"table_id": table_id, "status": "PARTIAL" if summary.incomplete else "DONE",
           **summary.to_json()}
    log.info("optimized", extra={"summary": out})
    if summary.errors:
        _record_end({**out, "status": "FAILED"}, run_id, actor, correlation_id)
        raise DatalakeError(f"compaction failed for {len(summary.errors)} merge(s)",
                            details=summary.errors)
    _record_end(out, run_id, actor, correlation_id)
    return out


def _record_end(out: dict[str, Any], run_id: str | None, actor: str,
                correlation_id: str | None) -> None:
    """Record a table's run's end under its run id, for whoever waits for it."""
    if not run_id or not out.get("table_id"):
        return
    with session_scope() as session:
        audit.record(session, actor=actor, action=OPTIMIZE_FINISHED, entity_type="table",
                     entity_id=out["table_id"], correlation_id=correlation_id,
                     details={**out, "run_id": run_id})


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
