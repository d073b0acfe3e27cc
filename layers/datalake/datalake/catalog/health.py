"""Whether the catalog database answers at all (the API's liveness check)."""

from __future__ import annotations

from sqlalchemy import text

from datalake.catalog.db import get_engine


def ping() -> None:
    """Run ``SELECT 1`` on a fresh connection of the catalog's engine.

    Raises
    ------
    Exception
        Whatever the driver raises when the database cannot be reached.
    """
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
