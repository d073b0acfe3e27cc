"""Audit trail: who did what, when, with which correlation id.

One rule: a service records the audit event of a change it makes, in the change's own
transaction (committed with it, or not at all); routes and handlers never record one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from datalake.catalog.models import AuditEvent
from datalake.catalog.sql_catalog import Session, SqlCatalog


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str | None = None,
    details: dict[str, Any] | None = None,
    correlation_id: str | None = None,
) -> AuditEvent:
    """Add an audit event to the session's transaction (committed with the change it records)."""
    event = AuditEvent(
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        details=details or {},
        correlation_id=correlation_id,
    )
    SqlCatalog(session).add(event)
    return event


def list_events(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    entity_id: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AuditEvent], int]:
    """Audit events matching the filters, newest first, and their total count."""
    return SqlCatalog(session).audit_events_page(
        actor=actor, action=action, entity_id=entity_id, since=since, limit=limit, offset=offset
    )
