"""Batches: a job's slices of work and the conditional updates of an attempt at one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from datalake.catalog.models import IngestionBatch, IngestionJob
from datalake.domain.vocabulary import BatchStatus


class BatchQueries:
    """Questions and changes of :class:`IngestionBatch` rows (and the job lock a worker
    records under)."""

    session: Session

    def lock_job(self, job_id: str) -> IngestionJob | None:
        """Read a job row as stored and hold its lock to the end of the transaction
        (``SELECT ... FOR UPDATE`` on Postgres; SQLite's write lock is held already)."""
        return self.session.scalar(
            select(IngestionJob)
            .where(IngestionJob.id == job_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    def batches_of(self, job_id: str) -> list[IngestionBatch]:
        """Every batch of a job."""
        return list(
            self.session.scalars(
                select(IngestionBatch).where(IngestionBatch.job_id == job_id)
            ).all()
        )

    def batch_attempts(self, job_id: str) -> int:
        """The attempts made at a job's batches, summed (a retried batch counts each)."""
        return int(
            self.session.execute(
                select(func.coalesce(func.sum(IngestionBatch.attempts), 0)).where(
                    IngestionBatch.job_id == job_id
                )
            ).scalar_one()
        )

    def fresh_batch(self, batch_id: str) -> IngestionBatch | None:
        """The batch as the catalog has it now (not the session's copy)."""
        return self.session.scalar(
            select(IngestionBatch)
            .where(IngestionBatch.id == batch_id)
            .execution_options(populate_existing=True)
        )

    def update_unfinished_batch(self, batch_id: str, **values: Any) -> bool:
        """Set ``values`` on a batch unless it SUCCEEDED already (bumping its version);
        False when it had: a concurrent attempt's outcome is never overwritten."""
        result = self.session.execute(
            update(IngestionBatch)
            .where(IngestionBatch.id == batch_id, IngestionBatch.status != BatchStatus.SUCCEEDED)
            .values(version=IngestionBatch.version + 1, **values)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def start_batch_attempt(self, batch_id: str, **values: Any) -> bool:
        """Count one more attempt at an unfinished batch and set ``values`` (RUNNING ...)."""
        return self.update_unfinished_batch(
            batch_id, attempts=IngestionBatch.attempts + 1, **values
        )

    def recorded_quarantine_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` a batch records as its quarantine object."""
        if not keys:
            return set()
        return {
            k
            for k in self.session.scalars(
                select(IngestionBatch.quarantine_key).where(
                    IngestionBatch.quarantine_key.in_(list(keys))
                )
            ).all()
            if k is not None
        }
