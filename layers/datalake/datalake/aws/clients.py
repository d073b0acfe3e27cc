"""boto3 clients, created once per process (container) and injectable in tests."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

# enough pooled connections for a writer's concurrent uploads (engine.uploads) plus reads
_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60,
    max_pool_connections=32,
)


@lru_cache(maxsize=16)
def client(service: str) -> Any:
    """A cached boto3 client; ``AWS_ENDPOINT_URL`` (LocalStack) is honoured by boto3 itself."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client(service, region_name=region, config=_CONFIG)  # type: ignore[call-overload]


def reset() -> None:
    """Forget cached clients (tests switch between moto and LocalStack)."""
    client.cache_clear()
