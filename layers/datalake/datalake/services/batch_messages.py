"""One batch message from the queue: check it is still wanted, run it, answer its token.

What happens to each message, so that nothing is processed uselessly or silently:

- its task token is dead (the task timed out and was retried with a new message, or the
  execution stopped): dropped, with a log line; the message is deleted;
- the job is no longer RUNNING: the token is answered ``Datalake.JobCancelled``;
- the batch succeeded already (a redelivery): the token gets the recorded outcome;
- the attempt fails: ``Datalake.BatchRetry`` while the job's retries last (the state
  machine retries with backoff), ``Datalake.BatchFailed`` after; an error that the same
  input raises on every attempt (``errors.DETERMINISTIC``: ``InvalidInput``,
  ``SchemaMismatch``, ``CorruptInput``, ...) is ``Datalake.BatchFailed`` at once, and
  the message is answered, not raised, so neither the state machine nor SQS runs it again;
- the token dies while the attempt runs: the attempt stops, deletes what it wrote, and
  the message is dropped.

A fault in answering (Step Functions unreachable) raises, so SQS redelivers the message
and, past the queue's ``maxReceiveCount``, moves it to the dead-letter queue; each such
failure is logged with the job, the batch and the receive count first.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from datalake.engine.store import ObjectStore
from datalake.errors import StaleTask, is_deterministic
from datalake.ports import TaskCallbacks
from datalake.services.jobs import JobCancelled
from datalake.services.worker import retries_left, run_batch

log = logging.getLogger(__name__)

RETRY = "Datalake.BatchRetry"  # the state machine retries these with backoff
FAILED = "Datalake.BatchFailed"  # deterministic, or retries exhausted: the job fails
CANCELLED = "Datalake.JobCancelled"
#: How often a running attempt tells Step Functions it is alive.
HEARTBEAT_EVERY_S = 30.0


class BatchMessage(BaseModel):
    """The body the state machine sends for each batch (``sqs:sendMessage``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    batch_id: str
    task_token: str
    timeout_seconds: float | None = None
    #: The job's correlation id (logs); absent in messages from before it was added.
    correlation_id: str | None = None


class TokenHeartbeat:
    """A progress callback that heartbeats a task token at most every ``every`` seconds.

    Raises
    ------
    StaleTask
        From a call, once the token is dead: the attempt stops and cleans up.
    """

    def __init__(self, callbacks: TaskCallbacks, token: str, *, every: float) -> None:
        self.callbacks, self.token, self.every = callbacks, token, every
        self._last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        if not self.callbacks.heartbeat(self.token):
            raise StaleTask("the workflow stopped waiting for this batch while it ran")


def handle_batch_message(
    body: str, *, receive_count: int, store: ObjectStore, callbacks: TaskCallbacks
) -> str:
    """Handle one message; return what became of it (``dropped``, ``cancelled``,
    ``succeeded``, ``retry``, ``failed``, ``stale``)."""
    try:
        msg = BatchMessage.model_validate_json(body)
    except ValidationError as e:
        # Retrying cannot fix a malformed body: say why and let it go.
        log.error("malformed batch message dropped: %s", e, extra={"receive_count": receive_count})
        return "dropped"
    where: dict[str, Any] = {
        "job_id": msg.job_id, "batch_id": msg.batch_id, "receive_count": receive_count,
    }
    try:
        return _handle(msg, where, store=store, callbacks=callbacks)
    except Exception:
        log.exception("batch message failed; SQS will deliver it again", extra=where)
        raise


def _handle(
    msg: BatchMessage, where: dict[str, Any], *, store: ObjectStore, callbacks: TaskCallbacks
) -> str:
    if not callbacks.heartbeat(msg.task_token):
        log.warning("stale batch message dropped: its task no longer waits", extra=where)
        return "dropped"
    beat = TokenHeartbeat(callbacks, msg.task_token, every=HEARTBEAT_EVERY_S)
    try:
        outcome = run_batch(
            msg.job_id, msg.batch_id, store=store, on_progress=beat,
            timeout_seconds=msg.timeout_seconds,
        )
    except StaleTask:
        log.warning("batch attempt stopped: its task no longer waits", extra=where)
        return "stale"
    except JobCancelled as e:
        log.info("job no longer running; batch not recorded: %s", e, extra=where)
        callbacks.failure(msg.task_token, error=CANCELLED, cause=str(e))
        return "cancelled"
    except Exception as e:  # the attempt failed; the workflow decides what happens next
        log.warning("batch attempt failed: %s: %s", type(e).__name__, e, extra=where)
        retry = not is_deterministic(e) and retries_left(msg.job_id, msg.batch_id)
        error = RETRY if retry else FAILED
        callbacks.failure(msg.task_token, error=error, cause=f"{type(e).__name__}: {e}")
        return "retry" if error == RETRY else "failed"
    log.info("batch done", extra={**where, **outcome.to_json()})
    callbacks.success(msg.task_token, outcome.to_json())
    return "succeeded"
