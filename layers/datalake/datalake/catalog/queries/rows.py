"""Generic row changes every aggregate needs: get, add, insert once, delete, compare-and-set."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from datalake.catalog.cas import compare_and_set
from datalake.errors import Conflict


class RowQueries:
    """Rows by primary key and the writes that are the same for every model."""

    session: Session

    def get[T](self, model: type[T], row_id: str) -> T | None:
        """The row of ``model`` with primary key ``row_id``, or None."""
        return self.session.get(model, row_id)

    def add(self, row: Any) -> None:
        """Add a new row to the change (written at the next flush)."""
        self.session.add(row)

    def insert[T](self, row: T, *, conflict: str) -> T:
        """Add ``row`` and write it now; a unique key it repeats is a :class:`Conflict`.

        Parameters
        ----------
        row:
            A new mapped row.
        conflict:
            The message of the Conflict (HTTP 409) raised when a unique constraint refuses
            the row (a table, source or idempotency key of that name exists).

        Raises
        ------
        Conflict
            With ``conflict`` as its message; the session must then be rolled back (the
            caller's ``session_scope`` or savepoint does).
        """
        self.session.add(row)
        try:
            self.session.flush()
        except IntegrityError as e:
            raise Conflict(conflict) from e
        return row

    def delete(self, row: Any) -> None:
        """Delete a row (at the next flush)."""
        self.session.delete(row)

    def flush(self) -> None:
        """Write the change's pending rows now (ids and defaults become known)."""
        self.session.flush()

    def savepoint(self) -> AbstractContextManager[Any]:
        """A nested transaction: a failure inside undoes only what it did."""
        return self.session.begin_nested()

    def compare_and_set(self, row: Any, **values: Any) -> bool:
        """Update ``row`` to ``values`` if its version is still the one read (see
        :func:`datalake.catalog.cas.compare_and_set`); False when it changed underneath."""
        return compare_and_set(self.session, row, **values)
