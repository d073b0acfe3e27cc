"""The catalog's questions about ingestion jobs, their batches and their files."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Row, Select, bindparam, select
from sqlalchemy.orm import Session

from datalake.catalog.cas import compare_and_set
from datalake.catalog.models import DataFile, IngestionBatch, IngestionJob
from datalake.catalog.paging import page, page_statements, row_page
from datalake.domain.vocabulary import FileStatus, JobStatus


@cache
def _jobs_page_statements(filters: frozenset[str]) -> tuple[Select[Any], Select[Any]]:
    """The statements of :meth:`JobQueries.jobs_page` for one set of filters, as bound
    parameters of the same names, built once per set."""
    jobs = IngestionJob.__table__.c
    query = select(*jobs)
    if "status" in filters:
        query = query.where(jobs.status.in_(bindparam("status", expanding=True)))
    if "table_id" in filters:
        query = query.where(jobs.table_id == bindparam("table_id"))
    if "created_after" in filters:
        query = query.where(jobs.created_at >= bindparam("created_after"))
    if "created_before" in filters:
        query = query.where(jobs.created_at < bindparam("created_before"))
    return page_statements(query, order_by=jobs.created_at.desc())


class JobQueries:
    """Jobs by id, key and filters; their status changes; their batches and files."""

    session: Session

    def job(self, job_id: str) -> IngestionJob | None:
        """The job of that id, or None."""
        return self.session.get(IngestionJob, job_id)

    def job_by_idempotency_key(self, key: str) -> IngestionJob | None:
        """The job created under an idempotency key (as stored), or None."""
        return self.session.scalar(
            select(IngestionJob).where(IngestionJob.idempotency_key == key)
        )

    def jobs_page(
        self,
        *,
        status: JobStatus | None = None,
        table_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[Row[Any]], int]:
        """A page of the jobs matching the filters, newest first, and their total: rows
        with a job's columns as attributes, for answers (not ORM objects to change)."""
        filters = {
            # As the API reports it: RUNNING includes the jobs COMMITTING.
            "status": list(status.stored()) if status else None,
            "table_id": table_id or None,
            "created_after": created_after,
            "created_before": created_before,
        }
        params = {k: v for k, v in filters.items() if v is not None}
        statements = _jobs_page_statements(frozenset(params))
        return row_page(self.session, statements, params, limit=limit, offset=offset)

    def set_job_status(
        self, job: IngestionJob, *, expect: Iterable[JobStatus], to: JobStatus, **fields: Any
    ) -> bool:
        """Move ``job`` to ``to`` if it is unchanged and in one of ``expect`` (compare-and-set);
        False when another process changed it first."""
        return compare_and_set(
            self.session, job, IngestionJob.status.in_(list(expect)), status=to, **fields
        )

    def unclean_finished_jobs(self, *, limit: int) -> list[str]:
        """Ids of failed or cancelled jobs that still have uncommitted file rows."""
        return list(
            self.session.scalars(
                select(IngestionJob.id)
                .where(
                    IngestionJob.status.in_((JobStatus.FAILED, JobStatus.CANCELLED)),
                    IngestionJob.id.in_(
                        select(DataFile.job_id).where(DataFile.status == FileStatus.PENDING)
                    ),
                )
                .limit(limit)
            ).all()
        )

    def batches_page(
        self, job_id: str, *, limit: int, offset: int
    ) -> tuple[list[IngestionBatch], int]:
        """A page of a job's batches in plan order, and their total."""
        query = select(IngestionBatch).where(IngestionBatch.job_id == job_id)
        return page(self.session, query, order_by=IngestionBatch.seq, limit=limit, offset=offset)

    def has_retried_batch(self, job_id: str) -> bool:
        """Whether some batch of the job took more than one attempt."""
        found = self.session.scalar(
            select(IngestionBatch.id)
            .where(IngestionBatch.job_id == job_id, IngestionBatch.attempts > 1)
            .limit(1)
        )
        return found is not None

    def batch_quarantine_keys(self, job_id: str) -> list[str]:
        """The quarantine object keys the job's batches recorded."""
        keys = self.session.scalars(
            select(IngestionBatch.quarantine_key).where(IngestionBatch.job_id == job_id)
        ).all()
        return [k for k in keys if k]

    def batch_quarantines(self, job_id: str) -> list[tuple[str, int]]:
        """The quarantine object key and rejected count of each batch of the job that
        recorded one, in plan order."""
        rows = self.session.execute(
            select(IngestionBatch.quarantine_key, IngestionBatch.records_rejected)
            .where(IngestionBatch.job_id == job_id, IngestionBatch.quarantine_key.is_not(None))
            .order_by(IngestionBatch.seq)
        ).all()
        return [(str(key), int(n or 0)) for key, n in rows]

    def job_file_keys(self, job_id: str) -> set[str]:
        """The object keys of every file row of a job, whatever its status."""
        return set(self.session.scalars(select(DataFile.key).where(DataFile.job_id == job_id)))
