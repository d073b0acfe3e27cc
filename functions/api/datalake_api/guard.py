"""The API's edge: what no route should ever see, refused before routing.

A pure ASGI middleware (no per-request objects beyond the body it must read):

- bodies over :data:`~datalake.domain.limits.MAX_BODY_BYTES` -> 413;
- JSON bodies are parsed strictly: ``NaN``/``Infinity``, nesting deeper than
  :data:`~datalake.domain.limits.MAX_JSON_DEPTH`, integers outside 64 bits, and strings
  (keys included) holding NUL or lone surrogates -> 422 naming the field;
- NUL in the path or a query value -> 422 naming the parameter.

Everything it lets through is text and numbers the catalog can store, so a bad string
can neither fail a statement nor leave a pooled connection broken.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from datalake.domain.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    text_problem,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BodyProblem(ValueError):
    """A JSON body the API refuses, with where in the body it is."""

    def __init__(self, loc: list[str | int], msg: str, kind: str) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind


def _no_constants(name: str) -> float:
    raise BodyProblem(["body"], f"{name} is not a JSON number", "json_invalid")


def check_json(data: Any, loc: list[str | int], depth: int = 0) -> None:
    """Raise :class:`BodyProblem` for the first value of ``data`` the catalog cannot hold."""
    if depth > MAX_JSON_DEPTH:
        raise BodyProblem(loc, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "too_deep")
    if isinstance(data, str):
        problem = text_problem(data)
        if problem:
            raise BodyProblem(loc, f"text {problem}", "string_invalid")
    elif isinstance(data, bool) or data is None or isinstance(data, float):
        return
    elif isinstance(data, int):
        if not INT64_MIN <= data <= INT64_MAX:
            raise BodyProblem(loc, "integer does not fit in 64 bits", "int_out_of_range")
    elif isinstance(data, dict):
        for key, value in data.items():
            problem = text_problem(key)
            if problem:
                raise BodyProblem(
                    [*loc, key.encode("utf-8", "replace").decode()],
                    f"key {problem}",
                    "string_invalid",
                )
            check_json(value, [*loc, key], depth + 1)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_json(value, [*loc, i], depth + 1)


def parse_body(body: bytes) -> Any:
    """Parse a request body as strict JSON (see the module's rules)."""
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except BodyProblem:
        raise
    except RecursionError as e:
        raise BodyProblem(["body"], "JSON nested too deeply", "too_deep") from e
    except ValueError as e:  # JSONDecodeError and bad UTF-8 alike
        raise BodyProblem(["body"], f"invalid JSON: {e}", "json_invalid") from e
    check_json(data, ["body"])
    return data


def _url_problem(scope: Scope) -> BodyProblem | None:
    if "\x00" in scope.get("path", ""):
        return BodyProblem(["path"], "the path must not contain NUL characters", "string_invalid")
    raw = scope.get("query_string", b"")
    if raw:
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            for part in (name, value):
                problem = text_problem(part)
                if problem:
                    return BodyProblem(["query", name], f"text {problem}", "string_invalid")
    return None


async def _answer(send: Send, status: int, detail: Any) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _unprocessable(problem: BodyProblem) -> list[dict[str, Any]]:
    return [{"loc": problem.loc, "msg": problem.msg, "type": problem.kind}]


class EdgeGuard:
    """ASGI middleware enforcing the module's rules before the app runs."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _url_problem(scope)
        if problem is not None:
            await _answer(send, 422, _unprocessable(problem))
            return
        if scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = f"the request body is larger than {self.max_body_bytes} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _answer(send, 413, too_big)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _answer(send, 413, too_big)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and b"json" in headers.get(b"content-type", b"application/json"):
            try:
                parse_body(body)
            except BodyProblem as e:
                await _answer(send, 422, _unprocessable(e))
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
