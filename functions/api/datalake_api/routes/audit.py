"""The audit trail (admin): who did what, when, with which correlation id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from datalake.services import audit
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
    rows, total = audit.list_events(
        session, actor=actor, action=action, entity_id=entity_id, since=since, limit=limit,
        offset=offset,
    )
    return Page(items=[AuditEventOut.model_validate(r) for r in rows], total=total)
