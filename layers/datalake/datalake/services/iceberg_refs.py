"""Where a table's Iceberg metadata is, without pyiceberg (the API's import path).

The API answers ``GET /tables/{id}`` and the Iceberg REST catalog's read endpoints from
the catalog's pointer (the JDBC catalog's ``iceberg_tables`` row, or Glue's table
parameter) and the metadata JSON itself, read with boto3: no pyiceberg, no pyarrow.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from datalake.catalog.db import get_engine, normalise_url
from datalake.catalog.models import DataLakeTable
from datalake.catalog.queries.iceberg import iceberg_metadata_location
from datalake.catalog.sql_catalog import Session
from datalake.config import Settings, get_settings
from datalake.errors import NotFound

log = logging.getLogger(__name__)

#: The Iceberg catalog's name (as services/iceberg.py names it).
CATALOG_NAME = "datalake"


def identifier(namespace: str, name: str) -> str:
    """``<namespace>.<name>``, a table's Iceberg identifier."""
    return f"{namespace}.{name}"


def joinable_catalog(settings: Settings | None = None) -> str | None:
    """The Iceberg SQL catalog's name when its pointers live in the catalog's own
    database (one statement can read a table and its pointer), else None (Glue, another
    database, or Iceberg off)."""
    settings = settings or get_settings()
    if settings.iceberg_catalog in ("none", "glue"):
        return None
    own = normalise_url(settings.database_url)
    uri = normalise_url(settings.iceberg_catalog_uri or settings.database_url)
    return CATALOG_NAME if uri == own else None


def metadata_location(
    session: Session, namespace: str, name: str, settings: Settings | None = None
) -> str | None:
    """The current metadata file of an Iceberg table (None: not published yet)."""
    settings = settings or get_settings()
    if settings.iceberg_catalog == "none":
        return None
    if settings.iceberg_catalog == "glue":
        try:
            from datalake.aws.clients import client  # lazy: boto3 costs the API's cold start

            got = client("glue").get_table(DatabaseName=namespace, Name=name)
        except Exception:  # not published yet, or Glue unreachable: nothing to show
            log.info("no Glue table %s.%s", namespace, name, exc_info=True)
            return None
        params = got.get("Table", {}).get("Parameters", {}) or {}
        return params.get("metadata_location")
    where = {"catalog_name": CATALOG_NAME, "namespace": namespace, "name": name}
    if joinable_catalog(settings) is not None:
        return iceberg_metadata_location(session, **where)
    uri = normalise_url(settings.iceberg_catalog_uri or settings.database_url)
    with get_engine(uri).connect() as conn:
        return iceberg_metadata_location(conn, **where)


def reference(session: Session, table: DataLakeTable) -> dict[str, Any] | None:
    """``{"identifier", "metadata_location"}`` of a table (None when Iceberg is off)."""
    return reference_of(session, table.namespace, table.name)


def reference_of(
    session: Session, namespace: str, name: str, *, joined: tuple[str | None] | None = None
) -> dict[str, Any] | None:
    """:func:`reference` by name; ``joined`` is the pointer already read beside the table
    (see :func:`joinable_catalog`), which spares a second query."""
    settings = get_settings()
    if settings.iceberg_catalog == "none":
        return None
    location = (
        joined[0] if joined is not None else metadata_location(session, namespace, name, settings)
    )
    return {"identifier": identifier(namespace, name), "metadata_location": location}


def read_metadata(location: str) -> dict[str, Any]:
    """The table metadata JSON at ``location`` (an ``s3://`` URI), as stored.

    Raises
    ------
    NotFound
        When the object is not there.
    """
    bucket, _, key = location.removeprefix("s3://").partition("/")
    from datalake.aws.clients import client  # lazy: boto3 costs the API's cold start

    s3 = client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as e:
        raise NotFound(f"Iceberg metadata {location} not found") from e
    data: dict[str, Any] = json.loads(body)
    return data
