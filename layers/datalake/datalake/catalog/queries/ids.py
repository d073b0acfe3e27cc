"""The catalog's one question about ids: which row a short id (a unique prefix) names."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from datalake.catalog.models import (
    Base,
    DataLakePartition,
    DataLakeSchema,
    DataLakeTable,
    DataSource,
    IngestionJob,
)
from datalake.domain.ids import id_prefix
from datalake.errors import Conflict, NotFound

#: What an id may name, and the table it is looked up in.
IdKind = Literal["job", "table", "source", "schema version", "partition"]
_MODELS: dict[str, type[Base]] = {
    "job": IngestionJob,
    "table": DataLakeTable,
    "source": DataSource,
    "schema version": DataLakeSchema,
    "partition": DataLakePartition,
}
#: Ambiguous matches named in the 409's message.
_SHOWN = 3


class IdQueries:
    """Whole ids from unique prefixes."""

    session: Session

    def resolve_id(self, kind: IdKind, ref: str) -> str:
        """The whole id of the one ``kind`` row whose id starts with ``ref``; ``ref``
        itself when it is a whole id or no id at all (see
        :func:`~datalake.domain.ids.id_prefix`).

        Raises
        ------
        NotFound
            When no row's id starts with ``ref``, or ``ref`` is a prefix too short.
        Conflict
            When several do (the message names some of them).
        """
        prefix = id_prefix(ref, kind)
        if prefix is None:
            return ref
        column = _MODELS[kind].id  # type: ignore[attr-defined]
        # LIKE alone: a range bound such as "...9" < "...:" sorts the other way under a
        # linguistic collation (en_US, the RDS default) and would find nothing. Short ids
        # are typed by people; whole ids never come here.
        found = list(self.session.scalars(
            select(column)
            .where(column.like(f"{prefix}%"))
            .order_by(column)
            .limit(_SHOWN + 1)
        ))
        if not found:
            raise NotFound(f"no {kind} has an id starting with {ref}")
        if len(found) > 1:
            more = ", ..." if len(found) > _SHOWN else ""
            raise Conflict(
                f"id prefix {ref} is ambiguous: several {kind}s start with it "
                f"({', '.join(found[:_SHOWN])}{more}); give more characters"
            )
        return str(found[0])
