"""The lake as the CLI reaches it: tables through the API, objects through S3."""

from __future__ import annotations

import os
from typing import Any

from datalake.cli.client import ApiClient, ApiError, CliError, Profile

API = "/api/v1"


class TableNotFound(CliError):
    """No live table has the name or id given."""


def resolve_table(api: ApiClient, ref: str) -> dict[str, Any]:
    """The table ``ref`` names (``NAMESPACE.NAME`` or an id).

    Raises
    ------
    TableNotFound
        When no live table has that name or id.
    """
    if "." in ref:
        namespace, name = ref.split(".", 1)
        page = api.get(f"{API}/tables/", namespace=namespace, limit=1000)
        for t in page["items"]:
            if t["name"] == name:
                return dict(t)
        raise TableNotFound(f"no table {ref} (namespace {namespace!r} has no table {name!r})")
    try:
        return dict(api.call("GET", f"{API}/tables/{ref}"))
    except ApiError as e:
        if e.status in (404, 422):
            raise TableNotFound(
                f"no table {ref} (name a table as NAMESPACE.NAME or by its id)"
            ) from e
        raise


def s3_client(profile: Profile) -> Any:
    """A boto3 S3 client for the profile (LocalStack's endpoint for the local stack)."""
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {"config": Config(retries={"max_attempts": 3, "mode": "standard"})}
    if profile.aws_endpoint_url:
        kwargs["endpoint_url"] = profile.aws_endpoint_url
        # LocalStack takes any credentials; real AWS uses the normal chain.
        kwargs.setdefault("aws_access_key_id", os.environ.get("AWS_ACCESS_KEY_ID") or "test")
        kwargs.setdefault(
            "aws_secret_access_key", os.environ.get("AWS_SECRET_ACCESS_KEY") or "test"
        )
    kwargs["region_name"] = profile.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", **kwargs)


def committed_files(api: ApiClient, table_id: str) -> list[dict[str, Any]]:
    """Every committed file of one snapshot of the table (all pages)."""
    page = api.get(f"{API}/tables/{table_id}/files", limit=10000)
    items = list(page["items"])
    while page.get("next"):
        page = api.get(f"{API}/tables/{table_id}/files", cursor=page["next"], limit=10000)
        items.extend(page["items"])
    return items
