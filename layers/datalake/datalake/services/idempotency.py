"""Idempotent job creation: the same ``Idempotency-Key`` always names the same job.

Keys are global (``ingestion_jobs.idempotency_key`` is unique) and stored as
``api:<key>``, apart from the keys the S3 trigger derives from upload events. A replay
must repeat the request: the same table, sources, format, options, retries and timeout
(compared after defaults are filled in); a different request with a used key is refused.
"""

from __future__ import annotations

from typing import Any

from datalake.catalog.models import IngestionJob
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.config import Settings, get_settings
from datalake.errors import Conflict, DatalakeError, InvalidInput
from datalake.services.jobs import create_job, validate_options

#: Longest key accepted (Stripe's limit; the column holds more, with the prefix).
MAX_KEY_LENGTH = 255
PREFIX = "api:"


def stored_key(key: str) -> str:
    """Validate a client's key and return the form stored on the job.

    Raises
    ------
    InvalidInput
        When the key is empty, too long or holds characters other than printable ASCII.
    """
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    if not all(" " <= ch <= "~" for ch in key):
        raise InvalidInput("Idempotency-Key must hold printable ASCII characters only")
    return PREFIX + key


def _same_request(job: IngestionJob, request: dict[str, Any], settings: Settings) -> bool:
    try:
        options = validate_options(request.get("options"), settings)
    except DatalakeError:
        return False
    retries = request.get("max_retries")
    timeout = request.get("timeout_seconds")
    return (
        job.table_id == request.get("table_id")
        and list(job.sources) == list(request.get("sources") or [])
        and job.format == request.get("format")
        and dict(job.options) == options
        and job.max_retries == (settings.default_max_retries if retries is None else retries)
        and job.timeout_seconds
        == (settings.default_timeout_seconds if timeout is None else timeout)
    )


def _replay(session: Session, key: str, request: dict[str, Any], settings: Settings) -> (
    IngestionJob | None
):
    job = SqlCatalog(session).job_by_idempotency_key(key)
    if job is None:
        return None
    if not _same_request(job, request, settings):
        raise Conflict(
            f"Idempotency-Key {key.removeprefix(PREFIX)!r} was used for a different request "
            f"(job {job.id})"
        )
    return job


def create_job_once(
    session: Session,
    *,
    idempotency_key: str,
    actor: str = "system",
    correlation_id: str | None = None,
    settings: Settings | None = None,
    **request: Any,
) -> tuple[IngestionJob, bool]:
    """Create the job of a request once per key; returns ``(job, created)``.

    Parameters
    ----------
    idempotency_key:
        The client's key (``Idempotency-Key`` header).
    actor, correlation_id:
        Recorded on the job and its ``job.create`` audit event (a replay records none).
    request:
        The arguments of :func:`datalake.services.jobs.create_job`: ``table_id``,
        ``sources``, ``format``, ``options``, ``max_retries``, ``timeout_seconds``.

    Raises
    ------
    InvalidInput
        For a bad key, or as :func:`~datalake.services.jobs.create_job`.
    Conflict
        When the key names a job created by a different request.
    NotFound
        As :func:`~datalake.services.jobs.create_job`.
    """
    settings = settings or get_settings()
    key = stored_key(idempotency_key)
    found = _replay(session, key, request, settings)
    if found is not None:
        return found, False
    try:
        with SqlCatalog(session).savepoint():
            job = create_job(
                session, idempotency_key=key, actor=actor, correlation_id=correlation_id,
                settings=settings, **request,
            )
    except Conflict:  # a concurrent request with the same key won the insert
        found = _replay(session, key, request, settings)
        if found is None:
            raise
        return found, False
    return job, True
