"""Plan a job: expand its sources, evolve the schema once, cut splits into batches."""

from __future__ import annotations

import json
from typing import Any

from datalake.catalog.db import session_scope
from datalake.catalog.models import IngestionBatch
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.config import get_settings
from datalake.domain.evolution import evolve, merge_observed
from datalake.domain.formats import IngestOptions
from datalake.domain.layout import job_plan_key
from datalake.domain.partitioning import parse_partitioning
from datalake.domain.vocabulary import JobStatus, SchemaPolicy
from datalake.engine.arrow_schema import sample_schema
from datalake.engine.partitioner import validate_partitioning
from datalake.engine.splits import Split, batch_to_json, pack_splits, plan_splits
from datalake.engine.store import ObjectInfo, ObjectStore
from datalake.errors import CommitConflict, InvalidInput, NotFound, SourceChanged, excerpt
from datalake.services.jobs import JobCancelled, get_job, parse_s3_uri
from datalake.services.schemas import plan_on, record_version, retire_unsettled, schema_at
from datalake.services.tables import get_table


def expand_sources(
    store: ObjectStore, uris: list[str], pins: dict[str, str] | None = None
) -> list[ObjectInfo]:
    """Resolve each source URI to objects: an exact key, or every object under a prefix.

    Raises
    ------
    InvalidInput
        When a URI names no object.
    SourceChanged
        When a pinned object (``pins``: URI -> the ETag its upload event named) was
        overwritten or deleted since: this job's upload is gone, and a newer one has a
        job of its own.
    """
    objects: list[ObjectInfo] = []
    seen: set[tuple[str, str]] = set()
    pins = pins or {}
    for uri in uris:
        bucket, key = parse_s3_uri(uri)
        found: list[ObjectInfo] = []
        if key and not key.endswith("/"):
            try:
                found = [store.head(bucket, key)]
            except (FileNotFoundError, NotFound):
                found = []
            pinned = pins.get(uri)
            if pinned and (not found or found[0].etag != pinned):
                now = repr(found[0].etag) if found else "nothing"
                raise SourceChanged(
                    f"{uri} was replaced after the upload event this job was started for "
                    f"(event ETag {pinned!r}, now {now}); a newer upload starts its own job"
                )
        if not found:
            found = [o for o in store.list(bucket, key) if not o.key.endswith("/")]
        if not found:
            raise InvalidInput(f"no object found at {uri}")
        for obj in sorted(found, key=lambda o: o.key):
            if (obj.bucket, obj.key) not in seen:
                seen.add((obj.bucket, obj.key))
                objects.append(obj)
    return objects


def _batch_items(
    job_id: str, batches: list[IngestionBatch], timeout: int, store: ObjectStore
) -> dict[str, Any]:
    """Write the batch list where the state machine's Map reads it, and describe it."""
    settings = get_settings()
    items = [{"batch_id": b.id, "seq": b.seq} for b in sorted(batches, key=lambda b: b.seq)]
    key = job_plan_key(job_id)
    store.put_bytes(settings.lake_bucket, key, json.dumps(items).encode())
    return {
        "job_id": job_id,
        "batch_count": len(batches),
        "max_concurrency": settings.map_concurrency,
        "items_bucket": settings.lake_bucket,
        "items_key": key,
        # the attempt's own budget, counted by the worker from pickup
        "timeout_seconds": timeout,
        # the task's backstop, which also counts time queued
        "task_timeout_seconds": timeout + settings.batch_queue_allowance_seconds,
        "batches": [{"job_id": job_id, **item} for item in items],
    }


def plan_job(job_id: str, *, store: ObjectStore) -> dict[str, Any]:
    """Plan a RUNNING job once; a re-run (Step Functions retry) returns the same batches.

    Raises
    ------
    JobCancelled
        When the job is no longer RUNNING.
    InvalidInput
        When a source holds no object or its format is unknown, or the table's partition
        spec does not fit the schema the job settled on (before any batch exists, and
        recording no schema version).
    CommitConflict
        When a concurrent job evolved the table's schema first: the state machine's
        retry of Plan (its only retry policy) re-plans on the winner's version.
    """
    with session_scope() as session:
        job = get_job(session, job_id)
        if job.status != JobStatus.RUNNING:
            raise JobCancelled(f"job {job_id} is {job.status}; not planning it")
        existing = SqlCatalog(session).batches_of(job_id)
        sources, fmt, options = list(job.sources), job.format, dict(job.options)
        pins = dict(job.source_etags or {})
        timeout = job.timeout_seconds
        if not existing:  # a version a failed job left is no schema to plan on
            retire_unsettled(session, job.table_id)
        table = get_table(session, job.table_id)
        # Only a table without a schema, or one that evolves, needs the files' schemas:
        # under freeze and discard_columns the workers check each file themselves.
        needs_schema = (
            table.current_schema_version is None or table.schema_policy == SchemaPolicy.EVOLVE
        )
    if existing:  # a re-run: the same batches, their list written again (harmless)
        return _batch_items(job_id, existing, timeout, store)

    objects = expand_sources(store, sources, pins)
    split_bytes = IngestOptions.of(options).split_size_bytes
    splits = plan_splits(
        objects, store=store, format=fmt, options=options, split_size_bytes=split_bytes
    )
    # small objects share a batch: a job of many small files is tens of worker runs
    groups = pack_splits(splits, split_size_bytes=split_bytes)
    observed = _observe(splits, store=store, options=options) if needs_schema else None

    # A CommitConflict (a concurrent job evolved the schema first) is raised as it is:
    # the state machine retries Plan, which re-plans on the winner's version.
    with session_scope() as session:
        job = get_job(session, job_id)
        if job.status != JobStatus.RUNNING:
            raise JobCancelled(f"job {job_id} is {job.status}; not planning it")
        version = _settle_schema(session, job_id, job.table_id, observed, bool(splits))
        _check_partitioning(session, job.table_id, version)
        job.schema_version = version
        batches = [
            IngestionBatch(job_id=job_id, seq=i, split=batch_to_json(group))
            for i, group in enumerate(groups)
        ]
        catalog = SqlCatalog(session)
        for batch in batches:
            catalog.add(batch)
        job.batches_total = len(batches)
        catalog.flush()
    # after the commit: a failed write is redone by the retried Plan (above)
    return _batch_items(job_id, batches, timeout, store)


def _observe(splits: list[Split], *, store: ObjectStore, options: dict[str, Any]) -> Any:
    """The union of the schemas of the job's objects (one sample per object)."""
    firsts: dict[tuple[str, str], Split] = {}
    for split in splits:
        firsts.setdefault((split.bucket, split.key), split)
    schemas = [sample_schema(s, store=store, options=options) for s in firsts.values()]
    return merge_observed(schemas) if schemas else None


def _settle_schema(
    session: Session, job_id: str, table_id: str, observed: Any, has_splits: bool
) -> int | None:
    """Evolve the table's schema by what this job's files hold: one version per job.

    A version a failed or cancelled job left behind is retired first, so this job settles
    from the last schema that describes data; the version it is planned on is then
    share-locked (:func:`plan_on`) so that no failed job's clean-up retires it before
    this job's row names it.

    Raises
    ------
    CommitConflict
        When the only schema was retired since this job decided not to sample its files
        (the job that settled it failed meanwhile): the retried Plan samples them.
    """
    retire_unsettled(session, table_id)
    version = plan_on(session, table_id)
    table = get_table(session, table_id)
    current = schema_at(session, table.id, version)
    if observed is None:
        if has_splits and version is None:
            raise CommitConflict(
                f"the schema of table {table.id} was retired (the job that settled it "
                f"failed) while job {job_id} was planned; planning again"
            )
        return version
    if not len(current):
        row = record_version(
            session,
            table,
            observed,
            source="ingest",
            description=f"inferred from job {job_id}",
            job_id=job_id,
        )
        return row.version
    if table.schema_policy != SchemaPolicy.EVOLVE:
        return version
    result = evolve(
        current, observed, table.schema_policy, table.last_column_id, mode=table.compatibility
    )
    if not result.changes:
        return version
    row = record_version(
        session,
        table,
        result.schema,
        source="ingest",
        description=f"evolved by job {job_id}",
        job_id=job_id,
        changes=result.changes,
    )
    return row.version


def _check_partitioning(session: Session, table_id: str, version: int | None) -> None:
    """Refuse the job at Plan when the table's partition spec does not fit the schema it
    settled on (a missing column, ``day`` of a string): every batch would fail on it.

    Raises
    ------
    InvalidInput
        Naming the field, the column's type and the schema version; raised inside the
        settling transaction, so a version this job inferred is not recorded.
    """
    table = get_table(session, table_id)
    schema = schema_at(session, table.id, version)
    spec = parse_partitioning(table.partitioning)
    if not spec or not len(schema):
        return
    try:
        validate_partitioning(spec, schema)
    except InvalidInput as e:
        columns = ", ".join(f"{f.name}: {f.type}" for f in schema.fields)
        raise InvalidInput(
            f"the table's partitioning does not fit the schema this job settled on: "
            f"{e.message}. Nothing was ingested and no schema version was recorded; "
            f"change the table's partitioning or its schema, or the files, and retry "
            f"(columns: {excerpt(columns)})",
            details={"partitioning": table.partitioning, "schema": schema.to_json()},
        ) from e
