"""The catalog's one optimistic write: update a row only if nobody changed it since it was read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from datalake.catalog.models import utcnow


def compare_and_set(session: Session, row: Any, *conditions: Any, **values: Any) -> bool:
    """Update ``row`` to ``values`` if its ``version`` is still the one read; bump the version.

    Every versioned catalog row (table, partition, job) changes through this one check,
    so two writers that read the same version cannot both win.

    Parameters
    ----------
    session:
        The change's session (its transaction).
    row:
        A mapped row with ``id`` and ``version`` columns, as it was read.
    *conditions:
        Further SQL conditions the row must still meet (e.g. an expected status).
    **values:
        The columns to set; ``version`` and, where the model has one, ``updated_at``
        are set here.

    Returns
    -------
    bool
        True when the row was updated (and refreshed); False when it changed underneath.
    """
    model = type(row)
    if hasattr(model, "updated_at") and "updated_at" not in values:
        values["updated_at"] = utcnow()
    result = session.execute(
        update(model)
        .where(model.id == row.id, model.version == row.version, *conditions)
        .values(version=row.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.refresh(row)
    return True
