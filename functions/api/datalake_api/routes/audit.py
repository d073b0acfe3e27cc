"""The audit trail (admin): who did what, when, with which correlation id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from datalake.catalog.models import AuditEvent
from datalake.catalog.paging import page
from datalake_api.deps import PrincipalDep, SessionDep
from datalake_api.models import Page, _Out
from datalake_api.params import IdFilter, Instant, Limit, NameFilter, Offset

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEventOut(_Out):
    id: str
    at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str | None
    details: dict[str, Any]
    correlation_id: str | None


@router.get("")
@router.get("/", include_in_schema=False)
def list_audit(
    session: SessionDep,
    who: PrincipalDep,
    actor: NameFilter = None,
    action: NameFilter = None,
    entity_id: IdFilter = None,
    since: Instant = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AuditEventOut]:
    who.require("admin")
    query = select(AuditEvent)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(AuditEvent.action == action)
    if entity_id:
        query = query.where(AuditEvent.entity_id == entity_id)
    if since:
        query = query.where(AuditEvent.at >= since)
    rows, total = page(session, query, order_by=AuditEvent.at.desc(), limit=limit, offset=offset)
    return Page(items=[AuditEventOut.model_validate(r) for r in rows], total=total)
