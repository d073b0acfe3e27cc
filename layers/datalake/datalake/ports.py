"""Interfaces the services need from the outside world, named for their role."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:  # the rows the catalog answers with; no SQLAlchemy at run time here
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
# over one session (the caller's transaction). Pages answer (rows, total).


class Catalog(Protocol):
    """The catalog of tables, schemas, sources, jobs and audit events (part one)."""

    # rows
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

    # tables
    def table(self, table_id: str) -> DataLakeTable | None:
        """A table, live or soft-deleted, or None."""
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
    ) -> tuple[list[IngestionJob], int]:
        """Jobs matching the filters, newest first."""
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
