"""Batches: a job's slices of work and the conditional updates of an attempt at one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from datalake.catalog.models import IngestionBatch, IngestionJob
from datalake.domain.vocabulary import BatchStatus

_FINISHED = tuple(s.value for s in BatchStatus if s.finished)


@cache
def _counters_statement() -> Select[Any]:
    """The statement of :meth:`BatchQueries.batch_counters`, built once (building a
    select costs more than running a small one)."""
    b = IngestionBatch.__table__.c
    done = b.status == BatchStatus.SUCCEEDED

    def of_succeeded(column: Any) -> Any:
        # Only a recorded (SUCCEEDED) attempt's figures count; a failed one's are zero.
        return func.sum(case((done, column), else_=0))

    return (
        select(
            b.job_id,
            func.sum(case((done, 1), else_=0)).label("batches_succeeded"),
            func.sum(case((b.status == BatchStatus.FAILED, 1), else_=0)).label("batches_failed"),
            of_succeeded(b.records_read).label("records_read"),
            of_succeeded(b.records_written).label("records_written"),
            of_succeeded(b.records_rejected).label("records_rejected"),
            of_succeeded(b.bytes_read).label("bytes_read"),
            of_succeeded(b.bytes_written).label("bytes_written"),
            of_succeeded(b.files_written).label("files_written"),
        )
        .where(b.job_id.in_(bindparam("job_ids", expanding=True)))
        .group_by(b.job_id)
    )


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
        """Set ``values`` on a batch unless it is finished (SUCCEEDED or CANCELLED), bumping
        its version; False when it was: a concurrent attempt's outcome, or a cancel, is
        never overwritten."""
        result = self.session.execute(
            update(IngestionBatch)
            .where(IngestionBatch.id == batch_id, IngestionBatch.status.not_in(_FINISHED))
            .values(version=IngestionBatch.version + 1, **values)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def cancel_unfinished_batches(self, job_id: str, *, at: datetime) -> int:
        """Mark a job's PENDING and RUNNING batches CANCELLED (a FAILED one keeps its
        error); returns how many."""
        result = self.session.execute(
            update(IngestionBatch)
            .where(
                IngestionBatch.job_id == job_id,
                IngestionBatch.status.in_((BatchStatus.PENDING, BatchStatus.RUNNING)),
            )
            .values(
                status=BatchStatus.CANCELLED, finished_at=at, version=IngestionBatch.version + 1
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def first_batch_error(self, job_id: str) -> str | None:
        """The error of the job's first FAILED batch in plan order, or None."""
        return self.session.scalar(
            select(IngestionBatch.error)
            .where(
                IngestionBatch.job_id == job_id,
                IngestionBatch.status == BatchStatus.FAILED,
                IngestionBatch.error.is_not(None),
            )
            .order_by(IngestionBatch.seq)
            .limit(1)
        )

    def batch_counters(self, job_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per job, its counters summed from its batch rows (one grouped statement over
        the batches' job index): what a running job has done so far."""
        if not job_ids:
            return {}
        rows = self.session.connection().execute(
            _counters_statement(), {"job_ids": list(job_ids)}
        )
        return {r.job_id: {k: int(v or 0) for k, v in r._mapping.items() if k != "job_id"}
                for r in rows}

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
