"""Partitions: lookups, listing, and the optimistic updates of their roll-ups."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from datalake.catalog.cas import compare_and_set
from datalake.catalog.models import DataFile, DataLakePartition
from datalake.catalog.paging import page
from datalake.domain.vocabulary import FileStatus


class PartitionQueries:
    """Questions and changes of :class:`DataLakePartition` rows."""

    session: Session

    def partition_by_path(self, table_id: str, path: str) -> DataLakePartition | None:
        """The partition row of a table at a Hive path ('' when unpartitioned), or None."""
        return self.session.scalar(
            select(DataLakePartition).where(
                DataLakePartition.table_id == table_id, DataLakePartition.path == path
            )
        )

    def current_partition(
        self, table_id: str, *, partition_id: str | None, path: str
    ) -> DataLakePartition | None:
        """The partition a file names (by id, or by path for older rows), as the catalog
        has it now (not the session's copy: its version is the stored one)."""
        return self.session.scalar(
            select(DataLakePartition)
            .where(
                DataLakePartition.id == partition_id
                if partition_id
                else (DataLakePartition.table_id == table_id) & (DataLakePartition.path == path)
            )
            .execution_options(populate_existing=True)
        )

    def partitions_of(
        self, table_id: str, *, partition_id: str | None = None
    ) -> list[DataLakePartition]:
        """A table's partitions (only ``partition_id``'s when given)."""
        query = select(DataLakePartition).where(DataLakePartition.table_id == table_id)
        if partition_id is not None:
            query = query.where(DataLakePartition.id == partition_id)
        return list(self.session.scalars(query).all())

    def page_partitions(
        self, table_id: str, *, limit: int, offset: int
    ) -> tuple[list[DataLakePartition], int]:
        """One page of a table's partitions in path order, and their total count."""
        query = select(DataLakePartition).where(DataLakePartition.table_id == table_id)
        return page(self.session, query, order_by=DataLakePartition.path, limit=limit,
                    offset=offset)

    def shrink_partition(
        self,
        part: DataLakePartition,
        *,
        records: int,
        files: int,
        size_bytes: int,
        corrupt_files: int,
        stats: dict[str, Any],
    ) -> bool:
        """Take retired files out of a partition's counts (relative to the stored ones,
        under the version read) and set its stats."""
        return compare_and_set(
            self.session,
            part,
            record_count=DataLakePartition.record_count - records,
            file_count=DataLakePartition.file_count - files,
            size_bytes=DataLakePartition.size_bytes - size_bytes,
            corrupt_files=DataLakePartition.corrupt_files + corrupt_files,
            stats=stats,
        )

    def small_file_partitions(
        self, table_id: str, *, below_bytes: int, path: str | None = None
    ) -> list[str]:
        """Paths of the partitions holding at least two COMMITTED files below
        ``below_bytes``, in path order (only ``path`` when given)."""
        query = (
            select(DataFile.partition_path)
            .where(
                DataFile.table_id == table_id,
                DataFile.status == FileStatus.COMMITTED,
                DataFile.size_bytes < below_bytes,
            )
            .group_by(DataFile.partition_path)
            .having(func.count() >= 2)
            .order_by(DataFile.partition_path)
        )
        if path is not None:
            query = query.where(DataFile.partition_path == path)
        return [str(p) for p in self.session.scalars(query).all()]
