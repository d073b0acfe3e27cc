"""Lambda adapters: request a compaction run by invoking the optimize function
asynchronously, or an Iceberg publish synchronously; a function's own deadline from its
invocation context."""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from datalake.aws.clients import client
from datalake.errors import CompactionUnavailable, TransientError


class LambdaCompactionRequester:
    """:class:`~datalake.services.partitions.CompactionRequester` over ``lambda:InvokeFunction``.

    The invocation is asynchronous (``InvocationType=Event``): Lambda queues it, retries it
    on failure, and the API answers at once. A run is idempotent, so a retry is harmless.
    """

    def __init__(self, function_name: str | None, lambda_client: Any = None) -> None:
        self.function_name = function_name
        self._client = lambda_client

    @property
    def client(self) -> Any:
        return self._client or client("lambda")

    def request(self, payload: dict[str, Any]) -> str | None:
        """Queue one optimize invocation; return Lambda's request id.

        Raises
        ------
        CompactionUnavailable
            When no function is configured or Lambda refuses the invocation.
        """
        if not self.function_name:
            raise CompactionUnavailable(
                "compaction is not configured (DATALAKE_OPTIMIZE_FUNCTION is not set)"
            )
        try:
            resp = self.client.invoke(
                FunctionName=self.function_name,
                InvocationType="Event",
                Payload=json.dumps(payload).encode(),
            )
        except (ClientError, BotoCoreError) as e:
            raise CompactionUnavailable(f"could not start compaction: {e}") from e
        return (resp.get("ResponseMetadata") or {}).get("RequestId")


class LambdaIcebergPublisher:
    """Publishes a table as Iceberg through the optimize function, synchronously
    (``InvocationType=RequestResponse``, ``{"table_id", "publish_only": true}``): the API
    carries no pyiceberg, the optimize function does. A
    :data:`~datalake.services.verify.Publisher`."""

    def __init__(self, function_name: str, lambda_client: Any = None) -> None:
        self.function_name = function_name
        self._client = lambda_client

    def __call__(self, table_id: str) -> None:
        """Publish ``table_id`` now.

        Raises
        ------
        TransientError
            When Lambda refused the invocation or the publish failed.
        """
        try:
            resp = (self._client or client("lambda")).invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps({"table_id": table_id, "publish_only": True}).encode(),
            )
        except (ClientError, BotoCoreError) as e:
            raise TransientError(f"could not ask for the Iceberg publish of {table_id}: {e}") from e
        if resp.get("FunctionError"):
            body = resp["Payload"].read()[:500] if resp.get("Payload") else b""
            raise TransientError(
                f"the Iceberg publish of {table_id} failed: {body.decode(errors='replace')}"
            )


def deadline(context: Any, *, margin_s: float) -> float | None:
    """The :func:`time.monotonic` instant ``margin_s`` before the invocation's timeout
    (at least a second from now); None without a Lambda context (tests, scripts)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return time.monotonic() + max(remaining() / 1000.0 - margin_s, 1.0)
