"""The catalog's side of Iceberg publishing: schemas of a table, change numbers of jobs,
and the metadata pointer in pyiceberg's SQL catalog table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from datalake.catalog.models import ICEBERG_TABLES, DataFile, DataLakeTable, IngestionJob


class IcebergQueries:
    """Questions Iceberg publishing and the readers ask of the catalog."""

    session: Session

    def jobs_of_changes(self, table_id: str, seqs: Sequence[int]) -> dict[int, str]:
        """``{change number: job id}`` of the table's changes ``seqs`` that a job's
        Commit made (by the job's ``file_seq``, or, for jobs committed before migration
        0006, by the change that committed their files)."""
        by_seq: dict[int, str] = {
            int(seq or 0): job_id
            for seq, job_id in self.session.execute(
                select(IngestionJob.file_seq, IngestionJob.id).where(
                    IngestionJob.table_id == table_id, IngestionJob.file_seq.in_(list(seqs))
                )
            ).all()
        }
        rest = [s for s in seqs if s not in by_seq]
        for seq, job_id in self.session.execute(
            select(DataFile.committed_seq, DataFile.job_id)
            .where(
                DataFile.table_id == table_id,
                DataFile.committed_seq.in_(rest),
                DataFile.job_id.is_not(None),
            )
            .distinct()
        ).all():
            if job_id is not None:
                by_seq.setdefault(int(seq or 0), job_id)
        return by_seq

    def record_iceberg_seq(self, table_id: str, seq: int) -> None:
        """Raise the table's ``iceberg_seq`` to ``seq`` (the change its Iceberg snapshot
        now shows); never lowers it."""
        self.session.execute(
            update(DataLakeTable)
            .where(DataLakeTable.id == table_id, DataLakeTable.iceberg_seq < seq)
            .values(iceberg_seq=seq)
            .execution_options(synchronize_session=False)
        )

    def iceberg_seq_of(self, table_id: str) -> int:
        """The last change of the table Iceberg is known to show (0: none)."""
        return int(self.session.scalar(
            select(DataLakeTable.iceberg_seq).where(DataLakeTable.id == table_id)
        ) or 0)


def iceberg_metadata_location(
    conn: Session | Connection, *, catalog_name: str, namespace: str, name: str
) -> str | None:
    """The current metadata location pyiceberg's SQL catalog records for a table.

    Takes a session or a bare connection: the Iceberg catalog may live in another
    database than ours.
    """
    return conn.scalar(
        select(ICEBERG_TABLES.c.metadata_location).where(
            ICEBERG_TABLES.c.catalog_name == catalog_name,
            ICEBERG_TABLES.c.table_namespace == namespace,
            ICEBERG_TABLES.c.table_name == name,
        )
    )
