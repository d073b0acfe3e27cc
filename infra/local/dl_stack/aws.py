"""boto3 clients pointed at the local stack."""

from __future__ import annotations

from typing import Any

from dl_stack.settings import ENDPOINT, REGION


def client(service: str, attempts: int = 3, **kwargs: Any) -> Any:
    """A boto3 client pointed at the local stack."""
    import boto3
    from botocore.config import Config

    make: Any = boto3.client  # untyped on purpose: boto3-stubs overloads per service name
    return make(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(
            retries={"total_max_attempts": attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=120,
        ),
        **kwargs,
    )

