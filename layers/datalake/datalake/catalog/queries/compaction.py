"""Compaction's catalog side: the tables it visits and the replaced files it sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from datalake.catalog.models import DataFile, DataLakeTable
from datalake.domain.vocabulary import FileStatus


class ReplacedFile(NamedTuple):
    """A REPLACED file's row as a sweep needs it."""

    id: str
    bucket: str
    key: str
    replaced_seq: int | None


class CompactionQueries:
    """The questions and deletions of compaction runs and their sweeps."""

    session: Session

    def live_table_ids(self) -> list[str]:
        """Ids of every live (not soft-deleted) table, oldest first."""
        return list(
            self.session.scalars(
                select(DataLakeTable.id)
                .where(DataLakeTable.deleted_at.is_(None))
                .order_by(DataLakeTable.created_at)
            ).all()
        )

    def replaced_files(
        self, table_id: str, *, replaced_before: datetime | None = None
    ) -> list[ReplacedFile]:
        """A table's REPLACED files (only those replaced at or before ``replaced_before``,
        or with no ``replaced_at``: replaced before retention existed, migration 0002)."""
        query = select(
            DataFile.id, DataFile.bucket, DataFile.key, DataFile.replaced_seq
        ).where(DataFile.table_id == table_id, DataFile.status == FileStatus.REPLACED)
        if replaced_before is not None:
            query = query.where(
                (DataFile.replaced_at.is_(None)) | (DataFile.replaced_at <= replaced_before)
            )
        return [ReplacedFile(*row) for row in self.session.execute(query).all()]

    def delete_replaced_rows(self, file_ids: Sequence[str]) -> None:
        """Delete the rows of these files that are REPLACED (at most 500 ids a call)."""
        self.session.execute(
            delete(DataFile)
            .where(DataFile.id.in_(list(file_ids)), DataFile.status == FileStatus.REPLACED)
            .execution_options(synchronize_session=False)
        )


