"""A job's rejected records, read back from its quarantine objects (``datalake rejects``).

The quarantine of a succeeded or failed job stays until the lake's quarantine lifecycle
rule expires it (``QuarantineRetentionDays``); a cancelled job's is deleted with it. An
object that is gone is said so in one sentence, never as the store's own error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.config import Settings, get_settings
from datalake.domain.vocabulary import JobStatus
from datalake.errors import NotFound
from datalake.ports import ObjectReader
from datalake.services.jobs import get_job, live_counters

__all__ = ["Rejects", "read_rejects"]


@dataclass(frozen=True)
class Rejects:
    """Up to ``limit`` rejected records of a job, of ``total``; ``missing`` are the
    quarantine objects its batches recorded that no longer exist, ``note`` says why."""

    job_id: str
    records_rejected: int
    total: int
    items: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def gone(self) -> bool:
        """Whether records were rejected and none of them can be read any more."""
        return self.total > 0 and not self.items and bool(self.missing)

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "records_rejected": self.records_rejected,
                "total": self.total, "items": self.items, "missing": self.missing,
                "gone": self.gone, "note": self.note}


def read_rejects(
    session: Session,
    job_id: str,
    *,
    store: ObjectReader,
    limit: int = 100,
    settings: Settings | None = None,
) -> Rejects:
    """The first ``limit`` records a job quarantined, in plan order, with their reasons.

    Parameters
    ----------
    session:
        The catalog session (read only).
    job_id:
        The job.
    store:
        Reads the lake's quarantine objects.
    limit:
        At most this many records are read and returned; ``total`` counts them all
        (from the batches' rejected counts, one quarantine line per rejected record).

    Raises
    ------
    NotFound
        When the job does not exist (a quarantine object that is gone is not an error:
        ``missing`` and ``note`` say so).
    """
    settings = settings or get_settings()
    job = get_job(session, job_id)
    quarantines = SqlCatalog(session).batch_quarantines(job.id)
    rejected = live_counters(session, job).get("records_rejected", job.records_rejected)
    items: list[dict[str, Any]] = []
    missing: list[str] = []
    bucket = settings.lake_bucket
    for key, _count in quarantines:
        if len(items) >= limit:
            break
        try:
            with store.open_input(bucket, key) as f:
                for line in f:
                    if line.strip():
                        items.append(_record(line, key))
                        if len(items) >= limit:
                            break
        except NotFound:
            missing.append(key)
    total = sum(n for _, n in quarantines)
    note = None
    if missing:
        why = ("it was deleted with the cancelled job" if job.status == JobStatus.CANCELLED
               else "expired under the lake's quarantine retention, or deleted")
        what = "are gone" if not items else f"are partly gone ({len(missing)} object(s))"
        note = f"the rejected records of job {job.id} {what}: {why}"
    return Rejects(job_id=job.id, records_rejected=int(rejected), total=total, items=items,
                   missing=missing, note=note)


def _record(line: bytes, key: str) -> dict[str, Any]:
    """One quarantine line; a line that is not JSON (an object altered by hand) is shown
    as what it is rather than failing the whole answer."""
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    excerpt = line[:200].decode("utf-8", errors="replace")
    return {"source": key, "error": "not a JSON object of the quarantine", "value": excerpt}
