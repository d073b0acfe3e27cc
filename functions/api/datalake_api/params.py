"""Query and path parameter types shared by the routes, bounded before the database sees them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

from datalake.domain.limits import ID_MAX, MAX_OFFSET, NAME_MAX


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
#: Ids in paths; a longer one cannot exist, so it is refused before a lookup.
PathId = Annotated[str, Path(max_length=ID_MAX)]
