"""One page of a query and the total it pages through (the API's ``{items, total}``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session


def page[T](
    session: Session, query: Select[T], *, order_by: Any, limit: int, offset: int
) -> tuple[list[T], int]:
    """Return ``limit`` rows of ``query`` from ``offset`` in ``order_by`` order, and the total.

    Parameters
    ----------
    session:
        The catalog session.
    query:
        A ``select(Model)`` with its filters applied.
    order_by:
        A column expression (or a tuple of them) giving a stable order.
    limit, offset:
        The page window.
    """
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order = order_by if isinstance(order_by, tuple) else (order_by,)
    rows = session.scalars(query.order_by(*order).limit(limit).offset(offset)).all()
    return list(rows), int(total)


def row_page(
    session: Session, query: Select[Any], *, order_by: Any, limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    """:func:`page` for a Core ``select`` of columns: plain rows, no ORM objects.

    For read-only answers (API pages): loading 50 jobs as ORM objects took about as much
    CPU as the rest of the request, and the rows answer the same by attribute.
    """
    conn = session.connection()
    total = conn.execute(select(func.count()).select_from(query.subquery())).scalar() or 0
    order = order_by if isinstance(order_by, tuple) else (order_by,)
    rows = conn.execute(query.order_by(*order).limit(limit).offset(offset)).all()
    return list(rows), int(total)
