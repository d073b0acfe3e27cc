"""What several commands look up through the API: tables by name, their files, an S3 client.

Kept apart from the commands (``app.py``) so ``query.py`` can use them without importing
the command module that imports it.
"""

from __future__ import annotations

import json
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


def split_name(ref: str) -> tuple[str, str]:
    """``NAMESPACE.NAME`` -> (namespace, name); a CliError for anything else."""
    if ref.count(".") != 1 or not all(ref.split(".")):
        raise CliError(f"name the table as NAMESPACE.NAME, not {ref!r}")
    ns, name = ref.split(".")
    return ns, name


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse (numbers, booleans)."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise CliError(f"--option wants key=value, not {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            result[key] = json.loads(raw)
        except ValueError:
            result[key] = raw
    return result


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


def s3_error(e: Exception, what: str) -> CliError:
    """A CliError naming what failed and the S3 error, on one line."""
    return CliError(f"{what}: {type(e).__name__}: {' '.join(str(e).split())}")


def committed_files(api: ApiClient, table_id: str) -> list[dict[str, Any]]:
    """Every committed file of one snapshot of the table (all pages)."""
    page = api.get(f"{API}/tables/{table_id}/files", limit=10000)
    items = list(page["items"])
    while page.get("next"):
        page = api.get(f"{API}/tables/{table_id}/files", cursor=page["next"], limit=10000)
        items.extend(page["items"])
    return items


def table_file_count(api: ApiClient, table_id: str | None) -> int | None:
    """How many committed files the table has now (``None`` when it cannot be read)."""
    if not table_id:
        return None
    try:
        return int(api.get(f"{API}/tables/{table_id}/files", limit=1)["total"])
    except (ApiError, KeyError, TypeError, ValueError):
        return None
