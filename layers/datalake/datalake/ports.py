"""Interfaces the services need from the outside world, named for their role."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:  # the rows the catalog answers with; no SQLAlchemy at run time here
    from sqlalchemy import Row

    from datalake.catalog.models import (
        AuditEvent,
        DataFile,
        DataLakePartition,
        DataLakeSchema,
        DataLakeTable,
        DataSource,
        IngestionBatch,
        IngestionJob,
        SchemaChange,
    )
    from datalake.catalog.queries.compaction import ReplacedFile
    from datalake.domain.compat import Change
    from datalake.domain.vocabulary import FileStatus, JobStatus


class Orchestrator(Protocol):
    """Starts and stops the ingestion workflow of a job (Step Functions in production)."""

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        """Start the job's workflow and return its execution id (ARN)."""
        ...

    def stop(self, execution_id: str, *, reason: str) -> None:
        """Ask the workflow to stop; the catalog's job status stays the authority."""
        ...


class TaskCallbacks(Protocol):
    """Reports a batch's outcome to the workflow waiting on its task token."""

    def heartbeat(self, token: str) -> bool:
        """Report progress; False when the workflow no longer waits for this token."""
        ...

    def success(self, token: str, output: dict[str, Any]) -> None: ...

    def failure(self, token: str, *, error: str, cause: str) -> None: ...


class ObjectDeleter(Protocol):
    """Deletes objects of the lake (written files of a failed or cancelled job)."""

    def delete(self, bucket: str, keys: list[str]) -> None: ...


class Keyed(Protocol):
    """An object listing entry: all a sweep needs is its key."""

    @property
    def key(self) -> str: ...


class ObjectSweeper(ObjectDeleter, Protocol):
    """Lists and deletes objects of the lake (a failed or cancelled job's leftovers)."""

    def list(self, bucket: str, prefix: str) -> Sequence[Keyed]: ...


class ObjectReader(Protocol):
    """Reads whole objects of the lake as streams (verification re-hashes them)."""

    def open_input(self, bucket: str, key: str) -> BinaryIO:
        """A read-only file object over the object; NotFound when it does not exist."""
        ...


# --------------------------------------------------------------------------- catalog
# The catalog's questions and changes, implemented by datalake.catalog.sql_catalog.SqlCatalog
# (datalake.catalog.queries.*) over one session (the caller's transaction). Pages answer
# (rows, total). Rows are the catalog's mapped models; their imports are for the type
# checker only, so this module stays free of SQLAlchemy at run time.


class CatalogRows(Protocol):
    """Generic row operations of one change (queries/rows.py)."""

    def get[T](self, model: type[T], row_id: str) -> T | None:
        """The row of ``model`` with that primary key, or None."""
        ...

    def add(self, row: Any) -> None:
        """Add a new row to the change."""
        ...

    def insert[T](self, row: T, *, conflict: str) -> T:
        """Add and write a row now; a repeated unique key raises Conflict(``conflict``)."""
        ...

    def delete(self, row: Any) -> None:
        """Delete a row."""
        ...

    def flush(self) -> None:
        """Write the change's pending rows now."""
        ...

    def savepoint(self) -> AbstractContextManager[Any]:
        """A nested transaction: a failure inside undoes only what it did."""
        ...

    def compare_and_set(self, row: Any, **values: Any) -> bool:
        """Update a versioned row if unchanged since read (bumping its version)."""
        ...


class FileCatalog(CatalogRows, Protocol):
    """Data files, partitions, batches, retries, compaction and Iceberg questions."""

    # files (queries/files.py)
    def committed_files(
        self,
        table_id: str,
        *,
        partition_paths: Sequence[str] | None = None,
        skip_corrupted_jobs: bool = False,
    ) -> list[DataFile]:
        """A table's COMMITTED files in key order."""
        ...

    def partition_files(self, part: DataLakePartition) -> list[DataFile]:
        """The COMMITTED files of a partition, by key."""
        ...

    def files_by_ids(self, file_ids: Sequence[str]) -> list[DataFile]:
        """The files with these ids."""
        ...

    def job_rows_held(self, job_id: str) -> int:
        """Rows in the job's own COMMITTED and CORRUPT files."""
        ...

    def recorded_keys(self, bucket: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` a file row names."""
        ...

    def retire_committed(self, file_ids: Sequence[str], **values: Any) -> int:
        """Set ``values`` on the still COMMITTED ones of these files; how many moved."""
        ...

    def forget(self, row: Any) -> None:
        """Drop the session's copy of ``row``."""
        ...

    def committed_stats(self, part: DataLakePartition) -> list[dict[str, Any]]:
        """The column stats of a partition's COMMITTED files."""
        ...

    def count_unverified(self, table_id: str, since: datetime | None) -> int:
        """COMMITTED files not verified since ``since`` (or never)."""
        ...

    def least_recently_verified(
        self, table_id: str, limit: int, since: datetime | None = None
    ) -> list[DataFile]:
        """Up to ``limit`` COMMITTED files, never or longest ago verified first (with
        ``since``: only those not verified since then)."""
        ...

    def mark_verified(self, file_ids: Sequence[str], at: datetime) -> None:
        """Record the verification of the still COMMITTED ones of these files."""
        ...

    def mark_jobs_corrupted(self, job_ids: Sequence[str], at: datetime) -> None:
        """Mark jobs as corrupted (those not marked already)."""
        ...

    def all_snapshot_files(self, table_id: str, seq: int) -> list[DataFile]:
        """Every file of the table's snapshot ``seq``."""
        ...

    def files_added_in(self, table_id: str, seqs: Sequence[int]) -> list[DataFile]:
        """Files committed by the changes ``seqs``."""
        ...

    def files_removed_in(self, table_id: str, seqs: Sequence[int]) -> list[DataFile]:
        """Files replaced by the changes ``seqs``."""
        ...

    def retracted_files(self, table_id: str) -> list[DataFile]:
        """Files once committed that verification found CORRUPT."""
        ...

    # partitions (queries/partitions.py)
    def current_partition(
        self, table_id: str, *, partition_id: str | None, path: str
    ) -> DataLakePartition | None:
        """The partition a file names (by id, else by path), as stored."""
        ...

    def partitions_of(
        self, table_id: str, *, partition_id: str | None = None
    ) -> list[DataLakePartition]:
        """A table's partitions (only ``partition_id``'s when given)."""
        ...

    def page_partitions(
        self, table_id: str, *, limit: int, offset: int
    ) -> tuple[list[DataLakePartition], int]:
        """One page of a table's partitions in path order, and their total."""
        ...

    def shrink_partition(
        self,
        part: DataLakePartition,
        *,
        records: int,
        files: int,
        size_bytes: int,
        corrupt_files: int,
        stats: dict[str, Any],
    ) -> bool:
        """Take retired files out of a partition's counts under its version."""
        ...

    def small_file_partitions(
        self, table_id: str, *, below_bytes: int, path: str | None = None
    ) -> list[str]:
        """Paths of partitions with at least two COMMITTED files below ``below_bytes``."""
        ...

    # batches (queries/batches.py)
    def lock_job(self, job_id: str) -> IngestionJob | None:
        """A job row as stored, locked to the end of the transaction."""
        ...

    def batch_attempts(self, job_id: str) -> int:
        """The attempts made at a job's batches, summed."""
        ...

    def fresh_batch(self, batch_id: str) -> IngestionBatch | None:
        """The batch as stored."""
        ...

    def update_unfinished_batch(self, batch_id: str, **values: Any) -> bool:
        """Set ``values`` on a batch unless it SUCCEEDED already."""
        ...

    def start_batch_attempt(self, batch_id: str, **values: Any) -> bool:
        """Count one more attempt at an unfinished batch and set ``values``."""
        ...

    def recorded_quarantine_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` a batch records as its quarantine object."""
        ...

    # retries (queries/retries.py)
    def live_retry(self, job_id: str) -> str | None:
        """A pending, running or succeeded retry of the job, if any."""
        ...

    # compaction (queries/compaction.py)
    def live_table_ids(self) -> list[str]:
        """Ids of every live table, oldest first."""
        ...

    def replaced_files(
        self, table_id: str, *, replaced_before: datetime | None = None
    ) -> list[ReplacedFile]:
        """A table's REPLACED files (replaced at or before ``replaced_before``)."""
        ...

    def delete_replaced_rows(self, file_ids: Sequence[str]) -> None:
        """Delete the REPLACED rows of these files."""
        ...

    # Iceberg (queries/iceberg.py)
    def jobs_of_changes(self, table_id: str, seqs: Sequence[int]) -> dict[int, str]:
        """``{change number: job id}`` of the changes a job's Commit made."""
        ...


class Catalog(FileCatalog, Protocol):
    """The whole catalog: tables, schemas, sources, jobs and audit events, and the files."""

    # tables
    def table(self, table_id: str) -> DataLakeTable | None:
        """A table, live or soft-deleted, or None."""
        ...

    def table_as_stored(self, table_id: str) -> DataLakeTable | None:
        """A table row as committed now (the session's copy refreshed), or None."""
        ...

    def table_view(self, table_id: str, *, iceberg_catalog: str | None) -> Row[Any] | None:
        """A table's columns with its current schema document and, from the Iceberg SQL
        catalog named, its metadata pointer (read-only row), or None."""
        ...

    def live_tables_page(
        self, *, namespace: str | None = None, limit: int, offset: int
    ) -> tuple[list[DataLakeTable], int]:
        """Live tables (of a namespace), newest first."""
        ...

    def live_tables_by_name(self, namespace: str | None = None) -> list[DataLakeTable]:
        """Every live table (of a namespace) in namespace and name order."""
        ...

    def partition_by_path(self, table_id: str, path: str) -> DataLakePartition | None:
        """A table's partition at a Hive path, or None."""
        ...

    def snapshot_files(
        self,
        table_id: str,
        seq: int,
        *,
        after: tuple[str, str] | None = None,
        offset: int = 0,
        limit: int,
    ) -> tuple[list[DataFile], int]:
        """Files of a table's snapshot in (key, id) order after a keyset cursor."""
        ...

    # schemas
    def schema_at(self, table_id: str, version: int | None) -> DataLakeSchema | None:
        """A table's schema version row at ``version``, or None."""
        ...

    def schema_version(self, version_id: str) -> DataLakeSchema | None:
        """A schema version row by id, or None."""
        ...

    def schema_history(self, table_id: str) -> list[DataLakeSchema]:
        """Every version row of a table, oldest first."""
        ...

    def schema_versions_page(
        self, table_id: str, *, limit: int, offset: int
    ) -> tuple[list[DataLakeSchema], int]:
        """A table's version rows, oldest first."""
        ...

    def last_schema_version(self, table_id: str) -> int:
        """The highest version number a table recorded (0 for none)."""
        ...

    def schema_changes(
        self, table_id: str, versions: Sequence[int] | None = None
    ) -> dict[int, list[SchemaChange]]:
        """A table's recorded schema changes by version."""
        ...

    def add_schema_version(
        self, row: DataLakeSchema, changes: Sequence[Change]
    ) -> DataLakeSchema:
        """Write a version row and its SchemaChange rows."""
        ...

    def lock_schema_version(
        self, table_id: str, version: int, *, shared: bool = False
    ) -> DataLakeSchema | None:
        """A version row as stored, locked (shared or exclusive) to the end of the
        transaction, or None when there is none (any more)."""
        ...

    def schema_versions_written(self, table_id: str) -> set[int] | None:
        """The versions some data of the table was written with (None: unknown)."""
        ...

    def schema_version_in_use(self, table_id: str, version: int) -> bool:
        """Whether data, or a job that has not failed, depends on a version."""
        ...

    def delete_schema_version(self, table_id: str, version: int) -> None:
        """Delete a version and its changes; unlink the failed jobs planned on it."""
        ...

    # sources
    def sources_page(
        self, *, table_id: str | None = None, limit: int, offset: int
    ) -> tuple[list[DataSource], int]:
        """Sources (of a table), newest first."""
        ...

    def enabled_sources_in(self, bucket: str) -> list[DataSource]:
        """Enabled sources of live tables reading a bucket."""
        ...

    def disable_sources_of(self, table_id: str) -> None:
        """Disable a table's sources."""
        ...

    # jobs
    def job(self, job_id: str) -> IngestionJob | None:
        """A job, or None."""
        ...

    def job_by_idempotency_key(self, key: str) -> IngestionJob | None:
        """The job created under a stored idempotency key, or None."""
        ...

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
        """Jobs matching the filters, newest first (read-only rows, a job's columns as
        attributes)."""
        ...

    def set_job_status(
        self, job: IngestionJob, *, expect: Iterable[JobStatus], to: JobStatus, **fields: Any
    ) -> bool:
        """Compare-and-set a job's status; False when it changed underneath."""
        ...

    def unclean_finished_jobs(self, *, limit: int) -> list[str]:
        """Failed or cancelled jobs that still have uncommitted files."""
        ...

    def batches_page(
        self, job_id: str, *, limit: int, offset: int
    ) -> tuple[list[IngestionBatch], int]:
        """A job's batches in plan order."""
        ...

    def batches_of(self, job_id: str) -> list[IngestionBatch]:
        """Every batch of a job."""
        ...

    def has_retried_batch(self, job_id: str) -> bool:
        """Whether a batch of the job took more than one attempt."""
        ...

    def batch_quarantine_keys(self, job_id: str) -> list[str]:
        """The quarantine keys a job's batches recorded."""
        ...

    def job_files(self, job_id: str, *, status: FileStatus | None = None) -> list[DataFile]:
        """The file rows a job wrote (of one status)."""
        ...

    def job_file_keys(self, job_id: str) -> set[str]:
        """The object keys of all a job's file rows."""
        ...

    # audit
    def audit_events_page(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        entity_id: str | None = None,
        since: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[AuditEvent], int]:
        """Audit events matching the filters, newest first."""
        ...
