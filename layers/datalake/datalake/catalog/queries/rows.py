"""Generic row access every aggregate shares: add, get, flush."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session


class RowQueries:
    """Add and fetch mapped rows by primary key, inside the catalog's session."""

    session: Session

    def add(self, row: Any) -> None:
        """Add a new mapped row to the change (inserted at the next flush)."""
        self.session.add(row)

    def add_all(self, rows: Iterable[Any]) -> None:
        """Add new mapped rows to the change."""
        self.session.add_all(rows)

    def get[T](self, model: type[T], row_id: str) -> T | None:
        """The row of ``model`` with primary key ``row_id``, or None."""
        return self.session.get(model, row_id)

    def flush(self) -> None:
        """Send the change's pending inserts and updates (ids, constraints) now."""
        self.session.flush()
