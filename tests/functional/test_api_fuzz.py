"""Property-based fuzzing of the whole HTTP API against its own OpenAPI document.

Schemathesis generates requests (valid and invalid) for every operation, with a fixed
seed, and sends them with an admin token to the app on each catalog. Every answer must
be a non-5xx whose status, headers and body the OpenAPI document describes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from datalake.tokens import make_token
from datalake_api import deps
from datalake_api.main import create_app
from tests.fakes import FakeDeleter, FakeOrchestrator

#: Examples per operation; with the API's operations this is well over 1,000 requests.
EXAMPLES = 40
MIN_REQUESTS = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _seed_catalog(client: TestClient, headers: dict[str, str]) -> None:
    """A table, a source and a job, so generated ids sometimes hit real rows."""
    table = client.post(
        "/api/v1/tables/",
        json={
            "name": "fuzzed",
            "schema": {"fields": [{"name": "id", "type": "long"}, {"name": "ts", "type": "date"}]},
            "partitioning": [{"column": "ts", "transform": "day"}],
        },
        headers=headers,
    )
    assert table.status_code == 201, table.text
    tid = table.json()["id"]
    source = client.post(
        "/api/v1/sources",
        json={"name": "fuzz-src", "table_id": tid, "bucket": "datalake-landing"},
        headers=headers,
    )
    assert source.status_code == 201, source.text
    job = client.post(
        "/api/v1/ingestion/jobs",
        json={"table_id": tid, "sources": ["s3://datalake-landing/a.csv"]},
        headers=headers,
    )
    assert job.status_code == 201, job.text


def _fuzz(operation: Any, headers: dict[str, str], sent: Counter[str], failures: list[str]) -> None:
    """Send one operation's generated requests; record (not raise) what fails."""
    label = operation.label

    @seed(20261202)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    # Valid requests and invalid ones (wrong types, out-of-range values, missing fields).
    @given(
        case=st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
    )
    def run(case: Any) -> None:
        sent[label] += 1
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except BaseException as e:  # schemathesis' FailureGroup is a BaseExceptionGroup
        failures.append(f"{label}: {type(e).__name__}: {str(e)[:1500]}")


@pytest.mark.timeout(900)
def test_fuzzed_requests_never_5xx_and_match_the_openapi_document(use_catalog: str) -> None:
    app = create_app()
    app.dependency_overrides[deps.get_orchestrator] = lambda: FakeOrchestrator()
    app.dependency_overrides[deps.get_sweeper] = lambda: FakeDeleter()
    headers = {"Authorization": "Bearer " + make_token("fuzzer", ["admin"])}
    with TestClient(app, raise_server_exceptions=False) as client:
        _seed_catalog(client, headers)

    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    sent: Counter[str] = Counter()
    failures: list[str] = []

    for result in schema.get_all_operations():
        _fuzz(result.ok(), headers, sent, failures)

    total = sum(sent.values())
    print(f"fuzzed {total} requests over {len(sent)} operations on {use_catalog.split(':')[0]}")
    assert not failures, "\n\n".join(failures[:20])
    assert total >= MIN_REQUESTS, f"only {total} requests generated: {dict(sent)}"
