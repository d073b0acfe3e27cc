"""Data files: the questions about a table's files and the changes of their status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from datalake.catalog.models import DataFile, DataLakePartition, IngestionJob
from datalake.catalog.snapshots import in_snapshot
from datalake.domain.vocabulary import FileStatus

_CHUNK = 500


class FileQueries:
    """Questions and changes of :class:`DataFile` rows."""

    session: Session

    def committed_files(
        self,
        table_id: str,
        *,
        partition_paths: Sequence[str] | None = None,
        skip_corrupted_jobs: bool = False,
    ) -> list[DataFile]:
        """A table's COMMITTED files in key order.

        ``partition_paths`` keeps only the files of those partitions; ``skip_corrupted_jobs``
        leaves out the files of jobs verification marked corrupted.
        """
        query = select(DataFile).where(
            DataFile.table_id == table_id, DataFile.status == FileStatus.COMMITTED
        )
        if skip_corrupted_jobs:
            corrupted = select(IngestionJob.id).where(IngestionJob.corrupted_at.is_not(None))
            query = query.where(
                or_(DataFile.job_id.is_(None), DataFile.job_id.not_in(corrupted))
            )
        if partition_paths is not None:
            query = query.where(DataFile.partition_path.in_(list(partition_paths)))
        return list(self.session.scalars(query.order_by(DataFile.key)).all())

    def partition_files(self, part: DataLakePartition) -> list[DataFile]:
        """The COMMITTED files of a partition (by id, or by path for older rows), by key."""
        return list(
            self.session.scalars(
                select(DataFile)
                .where(
                    DataFile.table_id == part.table_id,
                    DataFile.status == FileStatus.COMMITTED,
                    or_(DataFile.partition_id == part.id, DataFile.partition_path == part.path),
                )
                .order_by(DataFile.key)
            ).all()
        )

    def files_by_ids(self, file_ids: Sequence[str]) -> list[DataFile]:
        """The files with these ids (any status)."""
        if not file_ids:
            return []
        return list(self.session.scalars(select(DataFile).where(DataFile.id.in_(file_ids))).all())

    def job_files(self, job_id: str, *, status: FileStatus | None = None) -> list[DataFile]:
        """The file rows a job wrote (of one status)."""
        query = select(DataFile).where(DataFile.job_id == job_id)
        if status is not None:
            query = query.where(DataFile.status == status)
        return list(self.session.scalars(query).all())

    def job_rows_held(self, job_id: str) -> int:
        """Rows in the job's own COMMITTED and CORRUPT files."""
        held = self.session.scalar(
            select(func.coalesce(func.sum(DataFile.record_count), 0)).where(
                DataFile.job_id == job_id,
                DataFile.status.in_((FileStatus.COMMITTED, FileStatus.CORRUPT)),
            )
        )
        return int(held or 0)

    def recorded_keys(self, bucket: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` in ``bucket`` a file row names (whatever its status)."""
        if not keys:
            return set()
        return set(
            self.session.scalars(
                select(DataFile.key).where(DataFile.bucket == bucket, DataFile.key.in_(keys))
            ).all()
        )

    def retire_committed(self, file_ids: Sequence[str], **values: Any) -> int:
        """Set ``values`` (a new status ...) on those of the files still COMMITTED.

        Returns how many moved: fewer than asked when another change retired some first.
        """
        moved = 0
        ids = list(file_ids)
        for start in range(0, len(ids), _CHUNK):
            result = self.session.execute(
                update(DataFile)
                .where(
                    DataFile.id.in_(ids[start : start + _CHUNK]),
                    DataFile.status == FileStatus.COMMITTED,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            moved += int(result.rowcount)  # type: ignore[attr-defined]
        return moved

    def forget(self, row: Any) -> None:
        """Drop what the session holds of ``row``: its next read comes from the catalog."""
        self.session.expire(row)

    def committed_stats(self, part: DataLakePartition) -> list[dict[str, Any]]:
        """The column stats of a partition's COMMITTED files."""
        return list(
            self.session.scalars(
                select(DataFile.column_stats).where(
                    DataFile.table_id == part.table_id,
                    DataFile.status == FileStatus.COMMITTED,
                    or_(DataFile.partition_id == part.id, DataFile.partition_path == part.path),
                )
            ).all()
        )

    # ------------------------------------------------------------- verification

    def count_unverified(self, table_id: str, since: datetime | None) -> int:
        """COMMITTED files of a table not verified since ``since`` (or never)."""
        due = (
            DataFile.verified_at.is_(None)
            if since is None
            else or_(DataFile.verified_at.is_(None), DataFile.verified_at < since)
        )
        return int(
            self.session.scalar(
                select(func.count())
                .select_from(DataFile)
                .where(
                    DataFile.table_id == table_id,
                    DataFile.status == FileStatus.COMMITTED,
                    due,
                )
            )
            or 0
        )

    def least_recently_verified(
        self, table_id: str, limit: int, since: datetime | None = None
    ) -> list[DataFile]:
        """Up to ``limit`` COMMITTED files, never verified first, then the longest ago
        (with ``since``: only those not verified since then, the ones a pass still needs)."""
        due = [] if since is None else [
            or_(DataFile.verified_at.is_(None), DataFile.verified_at < since)
        ]
        return list(
            self.session.scalars(
                select(DataFile)
                .where(
                    DataFile.table_id == table_id, DataFile.status == FileStatus.COMMITTED, *due
                )
                # portable NULLS FIRST
                .order_by(
                    DataFile.verified_at.is_(None).desc(), DataFile.verified_at, DataFile.key
                )
                .limit(limit)
            ).all()
        )

    def mark_verified(self, file_ids: Sequence[str], at: datetime) -> None:
        """Record that the still COMMITTED ones of these files were verified at ``at``."""
        ids = list(file_ids)
        for start in range(0, len(ids), _CHUNK):
            self.session.execute(
                update(DataFile)
                .where(
                    DataFile.id.in_(ids[start : start + _CHUNK]),
                    DataFile.status == FileStatus.COMMITTED,
                )
                .values(verified_at=at)
                .execution_options(synchronize_session=False)
            )

    def mark_jobs_corrupted(self, job_ids: Sequence[str], at: datetime) -> None:
        """Mark jobs as corrupted at ``at`` (those not marked already)."""
        if not job_ids:
            return
        self.session.execute(
            update(IngestionJob)
            .where(IngestionJob.id.in_(list(job_ids)), IngestionJob.corrupted_at.is_(None))
            .values(corrupted_at=at)
            .execution_options(synchronize_session=False)
        )

    # ------------------------------------------------------------- snapshots

    def all_snapshot_files(self, table_id: str, seq: int) -> list[DataFile]:
        """Every file of the table's snapshot ``seq`` (unordered, unpaged)."""
        return list(
            self.session.scalars(
                select(DataFile).where(DataFile.table_id == table_id, in_snapshot(seq))
            ).all()
        )

    def files_added_in(self, table_id: str, seqs: Sequence[int]) -> list[DataFile]:
        """Files committed by the table's changes ``seqs``, in key order."""
        return list(
            self.session.scalars(
                select(DataFile)
                .where(DataFile.table_id == table_id, DataFile.committed_seq.in_(list(seqs)))
                .order_by(DataFile.key)
            ).all()
        )

    def files_removed_in(self, table_id: str, seqs: Sequence[int]) -> list[DataFile]:
        """Files replaced by the table's changes ``seqs``, in key order."""
        return list(
            self.session.scalars(
                select(DataFile)
                .where(DataFile.table_id == table_id, DataFile.replaced_seq.in_(list(seqs)))
                .order_by(DataFile.key)
            ).all()
        )

    def retracted_files(self, table_id: str) -> list[DataFile]:
        """Files once committed that verification found CORRUPT."""
        return list(
            self.session.scalars(
                select(DataFile).where(
                    DataFile.table_id == table_id,
                    DataFile.status == FileStatus.CORRUPT,
                    DataFile.committed_seq.is_not(None),
                )
            ).all()
        )
