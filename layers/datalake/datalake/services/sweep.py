"""The sweep: delete the objects and rows of files compaction replaced, once no reader
can need them.

A replaced file is deleted once ``replaced_file_retention_seconds`` (default 5 days) have
passed since ``replaced_at`` (a reader that listed the files before the swap can still
read them; its snapshot is refused after that long), or at once when the setting is 0.
Before deleting, the table's ``swept_seq`` is raised, so a snapshot that lists a deleted
file is refused rather than served with a hole; files an Iceberg snapshot younger than
the retention still lists stay for a later sweep. A compaction run that died between its
commit and its clean-up leaves REPLACED rows; a later run sweeps them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from datalake.catalog.db import session_scope
from datalake.catalog.models import utcnow
from datalake.catalog.snapshots import mark_swept
from datalake.catalog.sql_catalog import SqlCatalog
from datalake.config import get_settings
from datalake.engine.store import ObjectStore
from datalake.errors import DatalakeError
from datalake.services.jobs import publish_iceberg

log = logging.getLogger(__name__)

#: File rows deleted per statement.
DELETE_CHUNK = 500

#: A file to delete: ``(id, bucket, key)``.
type SweptFile = tuple[str, str, str]


def sweep_replaced(
    table_id: str, store: ObjectStore, *, retention_seconds: int | None = None
) -> int:
    """Delete the objects of a table's REPLACED files, then their rows; return how many.

    Only files replaced at least ``retention_seconds`` ago (default: the setting
    ``replaced_file_retention_seconds``) are swept, so a reader holding a listing (a
    snapshot) from before the swap can still read them. With a retention of 0 this
    finishes the work of a run that died between its commit and its clean-up.
    Idempotent.
    """
    if retention_seconds is None:
        retention_seconds = get_settings().replaced_file_retention_seconds
    # Iceberg first: every change up to now published (the sweep removes the rows a
    # late publish would need), and snapshots past the retention expired.
    try:
        publish_iceberg(table_id)
    except DatalakeError:
        log.warning("Iceberg publish of table %s failed; nothing swept", table_id,
                    exc_info=True)
        return 0
    _maintain_iceberg(table_id, retention_seconds)
    cutoff = (
        utcnow() - timedelta(seconds=retention_seconds) if retention_seconds > 0 else None
    )
    with session_scope() as session:
        rows = SqlCatalog(session).replaced_files(table_id, replaced_before=cutoff)
    if rows:
        return delete_replaced(
            store,
            table_id,
            [(r.id, r.bucket, r.key) for r in rows],
            max(r.replaced_seq or 0 for r in rows),
            retention_seconds,
        )
    return 0


def _maintain_iceberg(table_id: str, retention_seconds: int) -> None:
    """Expire old Iceberg snapshots and delete orphaned metadata (best effort)."""
    from datalake.services import iceberg

    try:
        removed = iceberg.maintain_table(table_id, retention_seconds=retention_seconds)
        if removed:
            log.info("deleted %d orphaned Iceberg metadata files of %s", removed, table_id)
    except Exception:  # upkeep only: the next run tries again
        log.warning("Iceberg upkeep of table %s failed", table_id, exc_info=True)


def _not_in_iceberg(
    table_id: str, files: list[SweptFile], retention_seconds: int, through_seq: int
) -> list[SweptFile]:
    """The files no retained Iceberg snapshot lists, after expiring the snapshots older
    than ``retention_seconds`` (services/iceberg.py; all of them when Iceberg is off)."""
    from datalake.services import iceberg

    if not iceberg.enabled():
        return files
    referenced = iceberg.expire_snapshots(
        table_id, retention_seconds=retention_seconds, before_seq=through_seq
    )
    if referenced is None:
        return files
    return [f for f in files if f"s3://{f[1]}/{f[2]}" not in referenced]


def delete_replaced(
    store: ObjectStore,
    table_id: str,
    files: list[SweptFile],
    through_seq: int,
    retention_seconds: int = 0,
) -> int:
    """Delete replaced files (objects, then rows), once snapshots that list them are refused.

    ``through_seq`` is the highest ``replaced_seq`` among ``files``. Files that an
    Iceberg snapshot still lists (one younger than the retention period) stay for a
    later run: a reader of that snapshot can still read them. Returns how many went.
    """
    files = _not_in_iceberg(table_id, files, retention_seconds, through_seq)
    if not files:
        return 0
    with session_scope() as session:
        mark_swept(session, table_id, through_seq)
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for _id, bucket, key in files:
        by_bucket[bucket].append(key)
    for bucket, keys in by_bucket.items():
        store.delete(bucket, keys)
    ids = [i for i, _b, _k in files]
    for start in range(0, len(ids), DELETE_CHUNK):
        with session_scope() as session:
            SqlCatalog(session).delete_replaced_rows(ids[start : start + DELETE_CHUNK])
    return len(ids)
