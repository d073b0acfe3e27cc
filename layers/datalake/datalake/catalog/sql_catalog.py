"""The SQL implementation of the :class:`datalake.ports.Catalog` port.

Services ask the catalog questions ("schema at version", "files of a job") and make
changes through this object; it is the only place outside ``datalake.catalog`` where
SQL is spelled, and it holds no transaction of its own: it works inside the session it
is given (``session_scope``), which commits or rolls back the whole change.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from datalake.catalog.queries.audit import AuditQueries
from datalake.catalog.queries.batches import BatchQueries
from datalake.catalog.queries.compaction import CompactionQueries
from datalake.catalog.queries.files import FileQueries
from datalake.catalog.queries.iceberg import IcebergQueries
from datalake.catalog.queries.ids import IdQueries
from datalake.catalog.queries.jobs import JobQueries
from datalake.catalog.queries.partitions import PartitionQueries
from datalake.catalog.queries.retries import RetryQueries
from datalake.catalog.queries.rows import RowQueries
from datalake.catalog.queries.schemas import SchemaQueries
from datalake.catalog.queries.sources import SourceQueries
from datalake.catalog.queries.tables import TableQueries

#: ``Session`` is re-exported: services and the API type their sessions with it, so that
#: nothing outside ``datalake.catalog`` imports SQLAlchemy.
__all__ = ["Session", "SqlCatalog"]


class SqlCatalog(
    AuditQueries,
    BatchQueries,
    CompactionQueries,
    FileQueries,
    IcebergQueries,
    IdQueries,
    JobQueries,
    PartitionQueries,
    RetryQueries,
    SchemaQueries,
    SourceQueries,
    TableQueries,
    RowQueries,
):
    """The catalog over one SQLAlchemy session.

    Parameters
    ----------
    session:
        The session of the change or read; the caller owns its transaction.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
