"""Query and path parameter types shared by the routes, bounded before the database sees them."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator

from datalake.catalog.queries.ids import IdKind
from datalake.catalog.sql_catalog import SqlCatalog
from datalake.domain.ids import id_prefix
from datalake.domain.limits import ID_MAX, MAX_OFFSET, NAME_MAX
from datalake_api.deps import PrincipalDep, SessionDep


def _utc(value: datetime | None) -> datetime | None:
    """Compare instants in UTC on both catalogs (SQLite stores naive UTC text)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as e:  # 9999-12-31T23:00-14:00 is past datetime's range in UTC
        raise ValueError("timestamp is out of range once converted to UTC") from e


Limit = Annotated[int, Query(ge=1, le=1000)]
BigLimit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Instant = Annotated[datetime | None, Query(), AfterValidator(_utc)]
#: A filter on an id or a name: never longer than the column it is compared with.
IdFilter = Annotated[str | None, Query(max_length=ID_MAX)]
NameFilter = Annotated[str | None, Query(max_length=NAME_MAX)]
#: Ids in paths; a longer one cannot exist, so it is refused before a lookup. Routes
#: take the resolving ones below (``JobId``, ...), which also accept a unique prefix.
PathId = Annotated[str, Path(max_length=ID_MAX)]


def _resolved(kind: IdKind, name: str) -> Callable[..., Awaitable[str]]:
    """A dependency that reads the path parameter ``name`` and answers the whole id of
    the ``kind`` it names (a unique prefix of 8 or more hex characters resolves)."""

    async def resolve(**values: Any) -> str:
        ref, session = values[name], values["session"]
        if id_prefix(ref, kind) is None:  # a whole id: no lookup, no thread hop
            return str(ref)
        return await run_in_threadpool(SqlCatalog(session).resolve_id, kind, ref)

    # Its parameter is named by the route's path (``job_id``, ...), so the signature
    # FastAPI reads is built here rather than written.
    kw = inspect.Parameter.KEYWORD_ONLY
    resolve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(name, kw, annotation=Annotated[str, Path(max_length=ID_MAX)]),
            # before the lookup: a caller without a valid token learns nothing about ids
            inspect.Parameter("who", kw, annotation=PrincipalDep),
            inspect.Parameter("session", kw, annotation=SessionDep),
        ],
        return_annotation=str,
    )
    return resolve


#: Ids in paths, each resolved from a unique prefix (``6408c5f2``) to the whole id.
JobId = Annotated[str, Depends(_resolved("job", "job_id"))]
TableId = Annotated[str, Depends(_resolved("table", "table_id"))]
SourceId = Annotated[str, Depends(_resolved("source", "source_id"))]
VersionId = Annotated[str, Depends(_resolved("schema version", "version_id"))]
PartitionId = Annotated[str, Depends(_resolved("partition", "partition_id"))]
