"""Each request's correlation id: chosen once, on every log line, echoed in the answer.

The id is the caller's ``X-Correlation-Id`` (when it is plain text of at most 128
characters), else ``X-Amzn-Trace-Id``, else API Gateway's request id, else a new UUID.
The same rule picks the id the audit trail records (``deps.correlation_id``), and the
jobs this request starts carry it through the state machine into every function's logs.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datalake.aws.observability import bind, unbind
from datalake.domain.limits import CORRELATION_ID_MAX, text_problem

log = logging.getLogger("datalake.api.requests")


def choose_correlation_id(scope: Scope) -> str:
    """The correlation id of a request (see the module's docstring)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    for name in ("x-correlation-id", "x-amzn-trace-id"):
        value = headers.get(name)
        if value and len(value) <= CORRELATION_ID_MAX and not text_problem(value):
            return value
    event: dict[str, Any] = scope.get("aws.event") or {}
    request_id = (event.get("requestContext") or {}).get("requestId")
    return str(request_id or uuid.uuid4())


class Correlation:
    """ASGI middleware: binds the correlation id, logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = choose_correlation_id(scope)
        scope.setdefault("state", {})["correlation_id"] = cid
        bind(correlation_id=cid)
        started = time.monotonic()
        answered: dict[str, int] = {}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                headers = MutableHeaders(scope=message)
                if "x-correlation-id" not in headers:
                    headers.append("X-Correlation-Id", cid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": answered.get("status"),
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            unbind()
