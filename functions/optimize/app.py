"""Optimize: compact small files per partition and refresh partition stats.

Invoked asynchronously by the API (``{"table_id", "partition_id"?, "target_file_size_mb"?}``)
or by a schedule (an event without ``table_id``: every live table is compacted); and
synchronously by the API with ``{"table_id", "publish_only": true}`` to publish a table
as Iceberg at once (after a verification took files out: the API has no pyiceberg).
"""

from __future__ import annotations

from typing import Any

from datalake.aws.events import OptimizeEvent
from datalake.aws.lambdas import deadline
from datalake.aws.observability import get_logger, instrument
from datalake.aws.s3 import S3ObjectStore
from datalake.services.optimize import optimize, publish

logger = get_logger()
store = S3ObjectStore()
#: Stop starting new merges this long before the function's timeout.
SAFETY_MARGIN_S = 90.0


@instrument("optimize")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = OptimizeEvent.model_validate(event)
    if request.publish_only and request.table_id:
        return publish(request.table_id)
    return optimize(
        request.table_id, store=store, partition_id=request.partition_id,
        target_file_size_mb=request.target_file_size_mb,
        deadline=deadline(context, margin_s=SAFETY_MARGIN_S), actor=request.actor,
        run_id=request.run_id, correlation_id=request.correlation_id,
    )
