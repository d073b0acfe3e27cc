"""The catalog's questions about the audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from datalake.catalog.models import AuditEvent
from datalake.catalog.paging import page


class AuditQueries:
    """Audit events, filtered and paged."""

    session: Session

    def audit_events_page(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        entity_id: str | None = None,
        since: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[AuditEvent], int]:
        """A page of the audit events matching the filters, newest first, and their total."""
        query = select(AuditEvent)
        if actor:
            query = query.where(AuditEvent.actor == actor)
        if action:
            query = query.where(AuditEvent.action == action)
        if entity_id:
            query = query.where(AuditEvent.entity_id == entity_id)
        if since:
            query = query.where(AuditEvent.at >= since)
        return page(
            self.session, query, order_by=AuditEvent.at.desc(), limit=limit, offset=offset
        )
