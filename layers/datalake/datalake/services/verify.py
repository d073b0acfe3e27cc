"""Verification: re-read a table's committed files and check them against their checksums.

No pyarrow here (the API calls it): a file's checksum is the SHA-256 of the whole object,
as the engine's writer (``datalake.engine.writer``) and compaction compute it, so
hashing the object's bytes with :mod:`hashlib` is all a check needs.

A call checks at most ``limit`` COMMITTED files, those never verified first, then the
ones verified longest ago (with ``since``, only those not verified since then):

- a good file gets ``verified_at``;
- a missing object, or one whose bytes do not hash to ``data_files.checksum``, is
  *corrupt*: its row becomes ``CORRUPT`` (so it leaves ``GET /tables/{id}/files`` and
  every reader's file list), its partition's ``record_count`` / ``file_count`` /
  ``size_bytes`` drop by the file's figures and ``corrupt_files`` grows by one, and the
  job that wrote it gets ``corrupted_at`` (it can then be retried, which rebuilds it:
  :mod:`datalake.services.rebuild`);
- an object that could not be read for another reason (a permission, a network fault)
  is reported under ``errors`` and left as it is.

Objects are read with no catalog transaction open; the marks are then written in one
transaction with optimistic checks (a file is marked only while it is still COMMITTED,
a partition only at the version read), retried when a concurrent commit wins.

Files taken out leave the Iceberg table in the same call: once the marks are committed
the caller's ``publish`` brings Iceberg up to date (a ``delete`` snapshot without
them), so no Iceberg reader is sent to an object the catalog no longer lists. A publish
that fails leaves the marks standing (``iceberg_published`` false in the report); the
next publish of the table (a Commit, compaction, the optimize schedule) retracts them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, utcnow
from datalake.catalog.sql_catalog import Session, SqlCatalog
from datalake.domain.stats import merge_stats
from datalake.domain.vocabulary import FileStatus
from datalake.errors import CommitConflict, InvalidInput, NotFound
from datalake.ports import ObjectReader
from datalake.services import audit
from datalake.services.tables import get_table

log = logging.getLogger(__name__)

#: Files checked per call unless the caller says otherwise, and at most.
DEFAULT_LIMIT, MAX_LIMIT = 1000, 10_000
#: Bytes read from an object at a time while hashing it (bounds memory).
READ_CHUNK = 4 * 2**20
#: Attempts of the marking transaction when a concurrent commit changes a partition.
APPLY_ATTEMPTS = 5

#: Publishes a table's committed catalog changes as Iceberg (raises when it could not):
#: ``services.jobs.publish_iceberg`` in the engine's functions; the API, which carries
#: no pyiceberg, asks the optimize function to (``aws.lambdas.LambdaIcebergPublisher``).
type Publisher = Callable[[str], None]


@dataclass(frozen=True)
class _Candidate:
    id: str
    bucket: str
    key: str
    checksum: str
    size_bytes: int
    partition_path: str
    job_id: str | None

    def describe(self, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": f"s3://{self.bucket}/{self.key}",
            "partition_path": self.partition_path,
            "job_id": self.job_id,
            "checksum": self.checksum,
            **extra,
        }


@dataclass
class VerifyReport:
    """What one verification call found and marked.

    ``remaining`` counts the committed files still due after this call: never verified
    (or, with ``since``, not verified since then), including files that could not be
    read (``errors``). Call again until it is 0; for a full pass over a table verified
    before, pass the first call's ``checked_at`` (the catalog's clock) as ``since`` to
    every later call. ``iceberg_published`` says whether the
    Iceberg table no longer lists the files this call took out (None: none taken out,
    or no publisher).
    """

    table_id: str
    files_checked: int = 0
    ok: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    partitions_marked: int = 0
    jobs_marked: list[str] = field(default_factory=list)
    remaining: int = 0
    since: datetime | None = None
    iceberg_published: bool | None = None
    #: When this call started, by the catalog's clock: files it verifies get a later
    #: ``verified_at``.
    checked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-serialisable dict."""
        return {
            **self.__dict__,
            "since": self.since.isoformat() if self.since else None,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
        }


@dataclass
class RetiredFiles:
    """Files taken out of a table by :func:`retire_files`."""

    files: list[DataFile] = field(default_factory=list)
    partitions: int = 0
    job_ids: list[str] = field(default_factory=list)


def object_sha256(store: ObjectReader, bucket: str, key: str) -> str:
    """The hex SHA-256 of a whole object, read in bounded chunks.

    Raises
    ------
    NotFound
        When the object does not exist.
    """
    digest = hashlib.sha256()
    with store.open_input(bucket, key) as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _count_due(session: Session, table_id: str, since: datetime | None) -> int:
    return SqlCatalog(session).count_unverified(table_id, since)


def _candidates(
    session: Session, table_id: str, limit: int, since: datetime | None
) -> list[_Candidate]:
    rows = SqlCatalog(session).least_recently_verified(table_id, limit, since)
    return [
        _Candidate(f.id, f.bucket, f.key, f.checksum, f.size_bytes, f.partition_path, f.job_id)
        for f in rows
    ]


def verify_table(
    session: Session,
    table_id: str,
    *,
    store: ObjectReader,
    limit: int = DEFAULT_LIMIT,
    since: datetime | None = None,
    deadline: float | None = None,
    actor: str = "system:verify",
    correlation_id: str | None = None,
    publish: Publisher | None = None,
) -> VerifyReport:
    """Check up to ``limit`` committed files of a table against their checksums.

    Audited as ``table.verify`` (what was checked and marked), with the marks.

    The session's transaction is committed before any object is read (so no catalog
    lock is held during the reads); the marks are written in a new transaction, which
    is committed here when files were taken out and ``publish`` is given (then Iceberg
    is published), else left to the caller to commit.

    Parameters
    ----------
    session:
        A catalog session with nothing pending that must not be committed yet.
    table_id:
        A live table.
    store:
        Reads whole objects (S3 in production).
    limit:
        At most this many files are read in this call (1 to 10,000).
    since:
        Files verified before this instant count as due again (a new full pass).
        Without it only never-verified files count in ``remaining``.
    deadline:
        A :func:`time.monotonic` instant after which no further object is read (the
        API answers in bounded time); the unread files stay due.
    publish:
        Publishes the table as Iceberg once files were taken out (None: the caller
        publishes, or Iceberg is off).

    Returns
    -------
    VerifyReport
        What was checked, what was found corrupt or missing, and what was marked.

    Raises
    ------
    NotFound
        When the table does not exist or is deleted.
    InvalidInput
        For a ``limit`` out of range.
    CommitConflict
        When partitions kept changing under every attempt to mark them.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer between 1 and {MAX_LIMIT}")
    get_table(session, table_id)
    started = utcnow()
    candidates = _candidates(session, table_id, limit, since)
    session.commit()  # end the read transaction before the (long) object reads

    report = VerifyReport(table_id=table_id, since=since, checked_at=started)
    good: list[str] = []
    bad: dict[str, _Candidate] = {}
    for c in candidates:
        if deadline is not None and time.monotonic() >= deadline:
            break
        report.files_checked += 1
        try:
            actual = object_sha256(store, c.bucket, c.key)
        except NotFound:
            report.missing.append(c.describe())
            bad[c.id] = c
            continue
        except Exception as e:  # unreadable for another reason: not evidence of damage
            log.warning("could not read s3://%s/%s to verify it", c.bucket, c.key, exc_info=True)
            report.errors.append(c.describe(error=f"{type(e).__name__}: {e}"))
            continue
        if actual == c.checksum:
            good.append(c.id)
        else:
            report.corrupt.append(c.describe(actual=actual))
            bad[c.id] = c

    for attempt in range(1, APPLY_ATTEMPTS + 1):
        try:
            retired = _apply(session, table_id, good, list(bad))
            break
        except CommitConflict:
            session.rollback()
            if attempt == APPLY_ATTEMPTS:
                raise
            log.info("verification marks of table %s lost a race; retrying", table_id)
    report.ok = len(good)
    # A file that left COMMITTED meanwhile (compacted) was not ours to mark.
    marked = {f.id for f in retired.files}
    report.missing = [m for m in report.missing if m["id"] in marked]
    report.corrupt = [m for m in report.corrupt if m["id"] in marked]
    report.partitions_marked = retired.partitions
    report.jobs_marked = retired.job_ids
    report.remaining = _count_due(session, table_id, since)
    audit.record(session, actor=actor, action="table.verify", entity_type="table",
                 entity_id=table_id, correlation_id=correlation_id, details={
                     "files_checked": report.files_checked,
                     "missing": [m["path"] for m in report.missing],
                     "corrupt": [c["path"] for c in report.corrupt],
                     "jobs_marked": report.jobs_marked,
                 })
    if retired.files and publish is not None:
        session.commit()  # the marks first: Iceberg follows the catalog, never leads it
        report.iceberg_published = _publish(publish, table_id)
    return report


def _publish(publish: Publisher, table_id: str) -> bool:
    try:
        publish(table_id)
    except Exception:  # the marks stand; the next publish of the table retracts them
        log.warning("Iceberg publish after verifying table %s failed", table_id, exc_info=True)
        return False
    return True


def mark_corrupt(table_id: str, file_ids: list[str]) -> RetiredFiles:
    """Take files found altered or missing (by compaction, say) out of their table, in a
    transaction of their own, exactly as :func:`verify_table` does.

    Raises
    ------
    CommitConflict
        When partitions kept changing under every attempt to mark them.
    """
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        try:
            with session_scope() as session:
                return _apply(session, table_id, [], list(file_ids))
        except CommitConflict:
            if attempt == APPLY_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def verify_tables(table_ids: list[str], store: ObjectReader, *, limit: int = DEFAULT_LIMIT,
                  deadline: float | None = None,
                  publish: Publisher | None = None) -> list[VerifyReport]:
    """Verify up to ``limit`` due files of each table (the optimize schedule's pass),
    publishing each table whose files were taken out with ``publish``."""
    reports = []
    for table_id in table_ids:
        if deadline is not None and time.monotonic() >= deadline:
            break
        with session_scope() as session:
            reports.append(verify_table(session, table_id, store=store, limit=limit,
                                        deadline=deadline, publish=publish))
    return reports


def _apply(session: Session, table_id: str, good: list[str], bad: list[str]) -> RetiredFiles:
    now = utcnow()
    catalog = SqlCatalog(session)
    catalog.mark_verified(good, now)
    retired = retire_files(session, catalog.files_by_ids(bad), to=FileStatus.CORRUPT, now=now)
    catalog.mark_jobs_corrupted(retired.job_ids, now)
    catalog.flush()
    return retired


def retire_files(
    session: Session,
    files: Sequence[DataFile],
    *,
    to: str,
    now: datetime,
    seq: int | None = None,
) -> RetiredFiles:
    """Take COMMITTED files out of their table, in the caller's transaction.

    Each file moves from COMMITTED to ``to`` (``CORRUPT``, or ``REPLACED`` with
    ``replaced_at``) only if it is still COMMITTED; its partition's counts drop by the
    files that moved, its column stats are recomputed from the files left (and
    ``corrupt_files`` grows for ``CORRUPT``), under the partition's version.

    Returns
    -------
    RetiredFiles
        The files that moved, the number of partitions updated and the jobs that wrote
        the moved files.

    Raises
    ------
    CommitConflict
        When a partition changed concurrently; the caller rolls back and retries.
    """
    if to not in (FileStatus.CORRUPT, FileStatus.REPLACED):
        raise ValueError(f"cannot retire files to {to!r}")
    catalog = SqlCatalog(session)
    values: dict[str, Any] = {"status": to}
    if to == FileStatus.REPLACED:
        values["replaced_at"] = now
        if seq is not None:  # the table change that replaces them (catalog.snapshots)
            values["replaced_seq"] = seq
    moved: list[DataFile] = []
    for f in files:
        if catalog.retire_committed([f.id], **values) == 1:
            moved.append(f)
        catalog.forget(f)
    by_partition: dict[tuple[str, str | None, str], list[DataFile]] = defaultdict(list)
    for f in moved:
        by_partition[(f.table_id, f.partition_id, f.partition_path)].append(f)
    for (table_id, partition_id, path), group in sorted(
        by_partition.items(), key=lambda kv: kv[0][2]
    ):
        _shrink_partition(
            session, table_id, partition_id, path, group, corrupt=to == FileStatus.CORRUPT
        )
    return RetiredFiles(
        files=moved,
        partitions=len(by_partition),
        job_ids=sorted({f.job_id for f in moved if f.job_id}),
    )


def _shrink_partition(
    session: Session,
    table_id: str,
    partition_id: str | None,
    path: str,
    group: list[DataFile],
    *,
    corrupt: bool,
) -> None:
    catalog = SqlCatalog(session)
    part = catalog.current_partition(table_id, partition_id=partition_id, path=path)
    if part is None:  # a file with no partition row: nothing to count down
        return
    shrunk = catalog.shrink_partition(
        part,
        records=sum(f.record_count for f in group),
        files=len(group),
        size_bytes=sum(f.size_bytes for f in group),
        corrupt_files=len(group) if corrupt else 0,
        stats=merge_stats({}, catalog.committed_stats(part)),
    )
    # compare_and_set refreshed the row: commit_job reads this partition next in the
    # same transaction, never at a stale version
    if not shrunk:
        raise CommitConflict(f"partition {path} changed concurrently")
