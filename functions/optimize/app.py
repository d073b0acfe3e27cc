"""Optimize: compact small files per partition and refresh partition stats.

Invoked asynchronously by the API (``{"table_id", "partition_id"?, "target_file_size_mb"?}``)
or by a schedule (an event without ``table_id``: every live table is compacted).
"""

from __future__ import annotations

import time
from typing import Any

from datalake.aws.clients import client
from datalake.aws.observability import get_logger, instrument
from datalake.aws.s3 import S3ObjectStore
from datalake.errors import DatalakeError, NotFound
from datalake.services.compaction import compact_all, compact_table, live_table_ids
from datalake.services.jobs import clean_up_finished_jobs
from datalake.services.verify import verify_tables

logger = get_logger()
#: Stop starting new merges this long before the function's timeout.
SAFETY_MARGIN_S = 90.0


def _deadline(context: Any) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return time.monotonic() + max(remaining() / 1000.0 - SAFETY_MARGIN_S, 1.0)


@instrument("optimize")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    store = S3ObjectStore(client("s3"))
    table_id = event.get("table_id")
    actor = str(event.get("requested_by") or "system:optimize")
    target = event.get("target_file_size_mb")
    deadline = _deadline(context)
    if table_id:
        try:
            summary = compact_table(
                str(table_id),
                store=store,
                partition_id=event.get("partition_id") or None,
                target_file_size_mb=target,
                deadline=deadline,
                actor=actor,
            )
        except NotFound as e:  # deleted since the request: a retry cannot help
            logger.warning("nothing to optimize", extra={"table_id": table_id, "error": str(e)})
            return {"table_id": table_id, "status": "NOT_FOUND", "error": str(e)}
    else:
        # The schedule re-reads committed files against their checksums first: a corrupt
        # file leaves the table (its job marked for a retry) before anything merges it.
        cleaned = clean_up_finished_jobs(store)
        if cleaned:
            logger.info("finished the clean-up of jobs", extra={"jobs": cleaned})
        for report in verify_tables(live_table_ids(), store, deadline=deadline):
            if report.corrupt or report.missing:
                logger.warning("verification found damaged files", extra=report.__dict__)
        summary = compact_all(store=store, target_file_size_mb=target, deadline=deadline,
                              actor=actor)
    out = {"table_id": table_id, "status": "PARTIAL" if summary.incomplete else "DONE",
           **summary.to_json()}
    logger.info("optimized", extra={"summary": out})
    if summary.errors:
        # Lambda retries a failed asynchronous invocation; a re-run is idempotent.
        raise DatalakeError(f"compaction failed for {len(summary.errors)} merge(s)",
                            details=summary.errors)
    return out
