"""Retries: the questions a rebuild of a job asks about its other attempts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from datalake.catalog.models import IngestionJob
from datalake.domain.vocabulary import JobStatus


class RetryQueries:
    """Questions about a job's retries."""

    session: Session

    def live_retry(self, job_id: str) -> str | None:
        """The id of a retry of the job that is pending, running, committing or
        succeeded, if any."""
        return self.session.scalar(
            select(IngestionJob.id)
            .where(
                IngestionJob.retry_of == job_id,
                IngestionJob.status.in_(
                    (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMMITTING,
                     JobStatus.SUCCEEDED)
                ),
            )
            .limit(1)
        )
