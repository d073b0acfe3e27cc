"""Data sources: uploads under a bucket/prefix start jobs for a table."""

from __future__ import annotations

from fastapi import APIRouter, status

from datalake.services import sources
from datalake_api.deps import CorrelationDep, PrincipalDep, SessionDep
from datalake_api.models import Page, SourceCreate, SourceOut
from datalake_api.params import IdFilter, Limit, Offset, SourceId

router = APIRouter(prefix="/sources", tags=["sources"])


@router.post("", status_code=status.HTTP_201_CREATED)
@router.post("/", status_code=status.HTTP_201_CREATED, include_in_schema=False)
def create_source(
    body: SourceCreate, session: SessionDep, who: PrincipalDep, cid: CorrelationDep
) -> SourceOut:
    who.require("writer")
    source = sources.create_source(
        session, actor=who.subject, correlation_id=cid, **body.model_dump()
    )
    return SourceOut.model_validate(source)


@router.get("")
@router.get("/", include_in_schema=False)
def list_sources(
    session: SessionDep,
    who: PrincipalDep,
    limit: Limit = 100,
    offset: Offset = 0,
    table_id: IdFilter = None,
) -> Page[SourceOut]:
    who.require("reader")
    items, total = sources.list_sources(session, limit=limit, offset=offset, table_id=table_id)
    return Page(items=[SourceOut.model_validate(s) for s in items], total=total)


@router.get("/{source_id}")
def get_source(source_id: SourceId, session: SessionDep, who: PrincipalDep) -> SourceOut:
    who.require("reader")
    return SourceOut.model_validate(sources.get_source(session, source_id))


@router.delete("/{source_id}")
def delete_source(
    source_id: SourceId, session: SessionDep, who: PrincipalDep, cid: CorrelationDep
) -> SourceOut:
    """Disable the source: later uploads under it start nothing; its history is kept."""
    who.require("admin")
    source = sources.disable_source(session, source_id, actor=who.subject, correlation_id=cid)
    return SourceOut.model_validate(source)
