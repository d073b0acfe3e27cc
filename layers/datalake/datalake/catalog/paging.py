"""One page of a query and the total it pages through (the API's ``{items, total}``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, bindparam, func, select
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


def page_statements(query: Select[Any], *, order_by: Any) -> tuple[Select[Any], Select[Any]]:
    """The count and the page statements of a Core ``select`` of columns, the window
    bound as ``limit`` and ``offset``: built once and kept by the caller, since building
    a 26-column select and its count took longer than running them.

    Parameters
    ----------
    query:
        A ``select`` of columns, its filters given as bound parameters.
    order_by:
        A column expression (or a tuple of them) giving a stable order.
    """
    order = order_by if isinstance(order_by, tuple) else (order_by,)
    count = select(func.count()).select_from(query.subquery())
    rows = query.order_by(*order).limit(bindparam("limit")).offset(bindparam("offset"))
    return count, rows


def row_page(
    session: Session,
    statements: tuple[Select[Any], Select[Any]],
    params: dict[str, Any],
    *,
    limit: int,
    offset: int,
) -> tuple[list[Row[Any]], int]:
    """:func:`page` for :func:`page_statements`: plain rows, no ORM objects.

    For read-only answers (API pages): loading 50 jobs as ORM objects took about as much
    CPU as the rest of the request, and the rows answer the same by attribute.
    """
    count, query = statements
    conn = session.connection()
    total = conn.execute(count, params).scalar() or 0
    rows = conn.execute(query, {**params, "limit": limit, "offset": offset}).all()
    return list(rows), int(total)
