"""Test doubles shared by the functional and integration tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LAKE, LANDING = "lake", "landing"


class FakeOrchestrator:
    """Stands in for Step Functions: records what was started and stopped."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        self.started.append(job_id)
        return f"arn:aws:states:us-east-1:000000000000:execution:ingest:{job_id}"

    def stop(self, execution_id: str, *, reason: str) -> None:
        self.stopped.append(execution_id)


class FakeDeleter:
    """Records the keys a service asked to delete."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, bucket: str, keys: list[str]) -> None:
        self.deleted.extend(keys)

    def list(self, bucket: str, prefix: str) -> list[Any]:
        return []


class FakeCallbacks:
    """Records task-token answers instead of calling Step Functions."""

    def __init__(self, dead: set[str] | None = None) -> None:
        self.ok: list[tuple[str, dict[str, Any]]] = []
        self.failed: list[tuple[str, str, str]] = []
        self.heartbeats: list[str] = []
        self.dead = dead if dead is not None else set()

    def heartbeat(self, token: str) -> bool:
        self.heartbeats.append(token)
        return token not in self.dead

    def success(self, token: str, output: dict[str, Any]) -> None:
        self.ok.append((token, output))

    def failure(self, token: str, *, error: str, cause: str) -> None:
        self.failed.append((token, error, cause))


@dataclass
class LambdaContext:
    """The attributes of a Lambda context object that Powertools reads."""

    function_name: str = "test-fn"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:test-fn"
    aws_request_id: str = "req-1"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def cli_document(out: str) -> Any:
    """The one JSON document a ``--json`` CLI run printed (indented, so it starts on a line
    of its own), whatever an in-process API logged to the same stdout around it."""
    import json

    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("{", "[", "{}", "[]"))
    doc, _ = json.JSONDecoder().raw_decode("\n".join(lines[start:]))
    return doc


def cli_through_app(client: Any, monkeypatch: Any, headers: dict[str, str]) -> None:
    """Send the CLI's API calls to an in-process app (a starlette ``TestClient``), with
    ``headers`` (the caller's token) on each, so CLI tests run against the real API."""
    from datalake.cli.client import ApiClient

    def request(self: ApiClient, method: str, path: str, body: Any = None,
                extra: dict[str, str] | None = None) -> tuple[int, Any]:
        r = client.request(method, path, json=body, headers={**headers, **(extra or {})})
        return r.status_code, (r.json() if r.content else None)

    monkeypatch.setattr(ApiClient, "request", request)
    monkeypatch.setenv("DATALAKE_API_URL", "http://testserver")
    monkeypatch.setenv("DATALAKE_TOKEN", "sent-by-the-test-client")
