"""Logs, metrics and traces of every function (Powertools for AWS Lambda), in one place.

- **Logs**: one Powertools ``Logger`` per process, named after the service (``datalake``),
  so every library logger (``datalake.*``) writes through it: JSON lines carrying
  ``correlation_id``, ``job_id`` and ``batch_id`` wherever they are known. The correlation
  id is the API's request id or the caller's ``X-Correlation-Id``; the API hands it to the
  job's execution input, and the state machine passes it to Plan, every batch message,
  Commit, Compact and Abort.
- **Metrics**: CloudWatch embedded metric format (Powertools ``Metrics``), one document
  per batch (:func:`emit_batch_metrics`) and one per finished job (:func:`emit_job_metrics`),
  dimensioned by ``service`` and ``table``; ids go in as metadata (high-cardinality ids
  must not be dimensions). ``JobsFailed`` is also emitted on ``service`` alone, for an alarm
  on failed jobs. See docs/alarms.md.
- **Traces**: the Powertools ``Tracer`` (X-Ray), on when ``DATALAKE_TRACING=true``, or by
  default on AWS (``DATALAKE_ENVIRONMENT=aws``); off locally; ``POWERTOOLS_TRACE_DISABLED``
  switches it off everywhere.

Nothing is created at import: the API imports :func:`bind` without owning a Logger when it
runs outside Lambda (tests, uvicorn), and its logs then stay plain stdlib logging.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

__all__ = [
    "bind",
    "emit_batch_metrics",
    "emit_job_metrics",
    "get_logger",
    "get_metrics",
    "instrument",
    "message_ids",
    "observe_batch",
    "tracing_enabled",
    "unbind",
]

F = TypeVar("F", bound=Callable[..., Any])
_LOGGER: Logger | None = None
_METRICS: Metrics | None = None
_TRACER: Tracer | None = None
#: Keys bound per request or record, removed again by :func:`unbind`.
CONTEXT_KEYS = ("correlation_id", "job_id", "batch_id")


def service_name() -> str:
    """``POWERTOOLS_SERVICE_NAME`` (the template sets ``datalake``), else ``datalake``."""
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or "datalake"


def metrics_namespace() -> str:
    """``POWERTOOLS_METRICS_NAMESPACE``, else ``Datalake``."""
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Datalake"


def tracing_enabled() -> bool:
    """Whether X-Ray tracing is on: ``POWERTOOLS_TRACE_DISABLED`` wins, then
    ``DATALAKE_TRACING``, then on for ``DATALAKE_ENVIRONMENT=aws`` only."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower()
    if disabled in ("1", "true", "yes"):
        return False
    from datalake.config import get_settings

    settings = get_settings()
    if settings.tracing is not None:
        return settings.tracing
    return settings.environment == "aws"


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is now, not to the one present at creation
    (test runners swap it per test; Lambda never does)."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def get_logger() -> Logger:
    """The process's Powertools Logger (created on first use)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = Logger(service=service_name(), logger_handler=_StdoutHandler())
    return _LOGGER


def get_metrics() -> Metrics:
    """The process's Powertools Metrics (EMF on stdout)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = Metrics(namespace=metrics_namespace(), service=service_name())
    return _METRICS


def get_tracer() -> Tracer:
    """The process's Tracer; disabled unless :func:`tracing_enabled`."""
    global _TRACER
    if _TRACER is None:
        _TRACER = Tracer(service=service_name(), disabled=not tracing_enabled())
    return _TRACER


def bind(**keys: Any) -> None:
    """Add keys (``correlation_id``, ``job_id``, ...) to every later log line; ``None``
    values are skipped. A no-op where no Logger was created (outside a function)."""
    if _LOGGER is not None:
        _LOGGER.append_keys(**{k: v for k, v in keys.items() if v is not None})


def unbind(*keys: str) -> None:
    """Remove keys added by :func:`bind` (default: the context keys)."""
    if _LOGGER is not None:
        _LOGGER.remove_keys(list(keys or CONTEXT_KEYS))


def instrument(function: str, *, correlation_id_path: str | None = "correlation_id") -> Callable[
    [F], F
]:
    """Wrap a Lambda handler: JSON logs with the function name, the invocation's context
    and its correlation id, and a trace segment when tracing is enabled.

    Parameters
    ----------
    function:
        The function's short name (``plan``, ``commit``, ...), on every log line.
    correlation_id_path:
        A JMESPath into the event for the correlation id (the state machine puts it at
        ``correlation_id``); ``None`` for events that carry one per record (SQS).
    """
    # No ``log_metrics`` decorator: every figure is flushed where it is measured (one
    # EMF document per batch or job), and an empty flush would only print a warning.
    logger = get_logger()
    # Constructing a Tracer imports aws_xray_sdk (about 0.5 s): only when tracing is on.
    tracer = get_tracer() if tracing_enabled() else None

    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            # Keys of the previous invocation must not leak into this one; the correlation
            # id has just been set from the event (or is per record, for SQS events).
            unbind("job_id", "batch_id") if correlation_id_path else unbind()
            if isinstance(event, dict):
                bind(job_id=event.get("job_id"))
                if correlation_id_path and not event.get("correlation_id"):
                    # An event from before correlation ids: the job id still ties it together.
                    bind(correlation_id=event.get("job_id"))
            return handler(event, context)

        wrapped: Any = logger.inject_lambda_context(
            wrapper, correlation_id_path=correlation_id_path, clear_state=False
        )
        if tracer is not None and not tracer.disabled:
            wrapped = tracer.capture_lambda_handler(wrapped, capture_response=False)
        logger.append_keys(function=function)
        return functools.wraps(handler)(wrapped)  # type: ignore[return-value]

    return decorate


def _flush(metrics: Metrics) -> None:
    # One EMF document now, so that each batch's (or job's) metadata stays its own.
    metrics.flush_metrics(raise_on_empty_metrics=False)


def emit_batch_metrics(
    job_id: str, batch_id: str, *, fate: str, duration_s: float, correlation_id: str | None,
    receive_count: int = 1,
) -> dict[str, Any] | None:
    """Emit one EMF document for an attempt at a batch, from the batch's catalog row.

    Metrics (dimensions ``service``, ``table``): ``BatchRecordsRead``,
    ``BatchRecordsWritten``, ``BatchRecordsRejected``, ``BatchBytesRead``,
    ``BatchBytesWritten``, ``BatchFilesWritten``, ``BatchDuration`` (ms), ``BatchRetries``
    (attempts before this one), ``BatchesSucceeded`` / ``BatchesFailed``. Metadata:
    ``job_id``, ``batch_id``, ``correlation_id``, ``fate``, ``receive_count``.

    Returns the figures emitted, or ``None`` when the batch is unknown (a malformed
    message). Never raises: metrics must not fail a batch.
    """
    try:
        return _emit_batch(job_id, batch_id, fate=fate, duration_s=duration_s,
                           correlation_id=correlation_id, receive_count=receive_count)
    except Exception:
        logging.getLogger(__name__).warning("could not emit batch metrics", exc_info=True)
        return None


def _emit_batch(
    job_id: str, batch_id: str, *, fate: str, duration_s: float, correlation_id: str | None,
    receive_count: int,
) -> dict[str, Any] | None:
    from datalake.catalog.db import session_scope
    from datalake.catalog.models import DataLakeTable, IngestionBatch, IngestionJob

    with session_scope(readonly=True) as session:
        batch = session.get(IngestionBatch, batch_id)
        job = session.get(IngestionJob, job_id)
        if batch is None or job is None:
            return None
        table = session.get(DataLakeTable, job.table_id)
        figures = {
            "BatchRecordsRead": (batch.records_read, MetricUnit.Count),
            "BatchRecordsWritten": (batch.records_written, MetricUnit.Count),
            "BatchRecordsRejected": (batch.records_rejected, MetricUnit.Count),
            "BatchBytesRead": (batch.bytes_read, MetricUnit.Bytes),
            "BatchBytesWritten": (batch.bytes_written, MetricUnit.Bytes),
            "BatchFilesWritten": (batch.files_written, MetricUnit.Count),
            "BatchDuration": (round(duration_s * 1000, 1), MetricUnit.Milliseconds),
            "BatchRetries": (max(int(batch.attempts or 0) - 1, 0), MetricUnit.Count),
            "BatchesSucceeded": (1 if fate == "succeeded" else 0, MetricUnit.Count),
            "BatchesFailed": (1 if fate in ("failed", "retry") else 0, MetricUnit.Count),
        }
        table_name = f"{table.namespace}.{table.name}" if table else job.table_id
    metrics = get_metrics()
    metrics.add_dimension(name="table", value=table_name)
    for name, (value, unit) in figures.items():
        metrics.add_metric(name=name, unit=unit, value=float(value or 0))
    meta: dict[str, Any] = {"job_id": job_id, "batch_id": batch_id,
                            "correlation_id": correlation_id, "fate": fate,
                            "receive_count": receive_count}
    for key, item in meta.items():
        if item is not None:
            metrics.add_metadata(key=key, value=item)
    _flush(metrics)
    return {k: v for k, (v, _) in figures.items()}


def emit_job_metrics(job_id: str, *, correlation_id: str | None = None) -> dict[str, Any] | None:
    """Emit the EMF documents of a finished job (at Commit, or Abort for a failed one).

    Metrics (``service``, ``table``): ``JobsSucceeded`` / ``JobsFailed``,
    ``JobRecordsRead``, ``JobRecordsWritten``, ``JobRecordsRejected``, ``JobBytesWritten``,
    ``JobFilesWritten``, ``JobBatches``, ``JobRetries`` (batch attempts beyond the first),
    ``JobDuration`` (s), ``JobRejectedRatio`` (%, of the records read) and, for a table with a
    ``max_rejected_ratio``, ``JobRejectedRatioThreshold`` (%) and
    ``JobRejectedRatioBreached`` (0/1). Then ``JobsFailed`` (0/1) on ``service`` alone.
    Never raises.
    """
    try:
        return _emit_job(job_id, correlation_id=correlation_id)
    except Exception:
        logging.getLogger(__name__).warning("could not emit job metrics", exc_info=True)
        return None


def _emit_job(job_id: str, *, correlation_id: str | None) -> dict[str, Any] | None:
    from datalake.catalog.db import session_scope
    from datalake.catalog.models import DataLakeTable, IngestionJob
    from datalake.catalog.sql_catalog import SqlCatalog
    from datalake.domain.vocabulary import JobStatus

    with session_scope(readonly=True) as session:
        job = session.get(IngestionJob, job_id)
        if job is None:
            return None
        table = session.get(DataLakeTable, job.table_id)
        attempts = SqlCatalog(session).batch_attempts(job_id)
        read = int(job.records_read or 0)
        rejected = int(job.records_rejected or 0)
        ratio = 100.0 * rejected / read if read else 0.0
        started = _naive_utc(job.started_at or job.created_at)
        ended = _naive_utc(job.finished_at) or datetime.now(UTC).replace(tzinfo=None)
        duration = (ended - started).total_seconds() if started else 0.0
        failed = job.status != JobStatus.SUCCEEDED
        figures: dict[str, tuple[float, MetricUnit]] = {
            "JobsSucceeded": (0 if failed else 1, MetricUnit.Count),
            "JobsFailed": (1 if failed else 0, MetricUnit.Count),
            "JobRecordsRead": (read, MetricUnit.Count),
            "JobRecordsWritten": (int(job.records_written or 0), MetricUnit.Count),
            "JobRecordsRejected": (rejected, MetricUnit.Count),
            "JobBytesWritten": (int(job.bytes_written or 0), MetricUnit.Bytes),
            "JobFilesWritten": (int(job.files_written or 0), MetricUnit.Count),
            "JobBatches": (int(job.batches_total or 0), MetricUnit.Count),
            "JobRetries": (max(int(attempts) - int(job.batches_total or 0), 0), MetricUnit.Count),
            "JobDuration": (round(max(duration, 0.0), 3), MetricUnit.Seconds),
            "JobRejectedRatio": (round(ratio, 4), MetricUnit.Percent),
        }
        threshold = getattr(table, "max_rejected_ratio", None) if table else None
        if threshold is not None:
            figures["JobRejectedRatioThreshold"] = (100.0 * threshold, MetricUnit.Percent)
            figures["JobRejectedRatioBreached"] = (
                1 if read and rejected / read > threshold else 0, MetricUnit.Count)
        table_name = f"{table.namespace}.{table.name}" if table else job.table_id
        status = job.status
    metrics = get_metrics()
    metrics.add_dimension(name="table", value=table_name)
    for name, (value, unit) in figures.items():
        metrics.add_metric(name=name, unit=unit, value=float(value))
    meta: dict[str, Any] = {"job_id": job_id, "correlation_id": correlation_id,
                            "status": status}
    for key, item in meta.items():
        if item is not None:
            metrics.add_metadata(key=key, value=item)
    _flush(metrics)
    # On ``service`` alone: one alarm covers every table's failed jobs.
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1.0 if failed else 0.0)
    metrics.add_metadata(key="job_id", value=job_id)
    _flush(metrics)
    return {k: v for k, (v, _) in figures.items()}


def _naive_utc(dt: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes, Postgres aware ones: compare them as naive UTC.
    if dt is None or dt.tzinfo is None:
        return dt
    return dt.astimezone(UTC).replace(tzinfo=None)


def message_ids(body: str) -> dict[str, str | None]:
    """``job_id``, ``batch_id`` and ``correlation_id`` of a batch message (None if absent)."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    return {k: (str(data[k]) if data.get(k) is not None else None) for k in CONTEXT_KEYS}


@contextlib.contextmanager
def observe_batch(body: str, *, receive_count: int) -> Iterator[dict[str, Any]]:
    """Around one batch message: its ids on every log line, then its metrics.

    The caller stores what became of the message in ``state["fate"]`` (what
    :func:`~datalake.services.batch_messages.handle_batch_message` returns); a message
    dropped unprocessed (malformed, or its task no longer waits) emits no metrics.
    """
    ids = message_ids(body)
    # A message from before correlation ids: the job id still ties its lines together.
    ids["correlation_id"] = ids["correlation_id"] or ids["job_id"]
    bind(**ids)
    state: dict[str, Any] = {"fate": None}
    t0 = time.monotonic()
    try:
        yield state
    except Exception:
        state["fate"] = state["fate"] or "error"
        raise
    finally:
        if ids["job_id"] and ids["batch_id"] and state["fate"] != "dropped":
            emit_batch_metrics(
                ids["job_id"], ids["batch_id"], fate=str(state["fate"]),
                duration_s=time.monotonic() - t0, correlation_id=ids["correlation_id"],
                receive_count=receive_count,
            )
        unbind()
