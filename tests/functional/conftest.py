"""Functional fixtures: moto's S3 beside a real catalog, and the API on that catalog."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from datalake.aws import clients
from datalake.config import get_settings
from tests.fakes import LAKE, LANDING, FakeDeleter, FakeOrchestrator


@pytest.fixture
def s3(use_catalog: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto S3 with the lake and landing buckets; the catalog at ``use_catalog``."""
    monkeypatch.setenv("DATALAKE_LAKE_BUCKET", LAKE)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    get_settings.cache_clear()
    clients.reset()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=LAKE)
        client.create_bucket(Bucket=LANDING)
        yield client
    clients.reset()
    get_settings.cache_clear()


@pytest.fixture
def no_retention(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Compaction deletes what it replaced at once (replaced_file_retention_seconds=0)."""
    monkeypatch.setenv("DATALAKE_REPLACED_FILE_RETENTION_SECONDS", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def api(use_catalog: str) -> Iterator[Any]:
    """The API app on ``use_catalog`` through Starlette's test client (no AWS calls)."""
    from starlette.testclient import TestClient

    from datalake_api import deps
    from datalake_api.main import create_app

    app = create_app()
    app.dependency_overrides[deps.get_orchestrator] = lambda: FakeOrchestrator()
    app.dependency_overrides[deps.get_sweeper] = lambda: FakeDeleter()
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
