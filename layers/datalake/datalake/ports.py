"""Interfaces the services need from the outside world, named for their role."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from datalake.catalog.models import (
        DataFile,
        DataLakePartition,
        DataLakeSchema,
        IngestionBatch,
        IngestionJob,
    )
    from datalake.catalog.queries.compaction import ReplacedFile
    from datalake.domain.vocabulary import FileStatus


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


# ------------------------------------------------------------------------- catalog
# The catalog's questions and changes, as services ask them (SqlCatalog implements them,
# datalake.catalog.queries.*). Rows are the catalog's mapped models; the imports are for
# the type checker only, so this module stays free of SQLAlchemy at run time.


class FileCatalog(Protocol):
    """Data files, partitions, batches, retries, compaction and Iceberg questions."""

    # generic rows (queries/rows.py)
    def add(self, row: Any) -> None:
        """Add a new row to the change."""
        ...

    def get[T](self, model: type[T], row_id: str) -> T | None:
        """The row of ``model`` with this primary key, or None."""
        ...

    def insert[T](self, row: T, *, conflict: str) -> T:
        """Add and write a row now; a repeated unique key raises Conflict(``conflict``)."""
        ...

    def flush(self) -> None:
        """Send the change's pending writes now."""
        ...

    def savepoint(self) -> AbstractContextManager[Any]:
        """A nested transaction: a failure inside undoes only what it did."""
        ...

    def compare_and_set(self, row: Any, **values: Any) -> bool:
        """Update a versioned row if unchanged since read (bumping its version)."""
        ...

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

    def job_files(self, job_id: str, *, status: FileStatus | None = None) -> list[DataFile]:
        """The file rows a job wrote (of one status)."""
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

    def least_recently_verified(self, table_id: str, limit: int) -> list[DataFile]:
        """Up to ``limit`` COMMITTED files, never or longest ago verified first."""
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
    def partition_by_path(self, table_id: str, path: str) -> DataLakePartition | None:
        """A table's partition at a Hive path, or None."""
        ...

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

    def batches_of(self, job_id: str) -> list[IngestionBatch]:
        """Every batch of a job."""
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
    def schema_history(self, table_id: str) -> list[DataLakeSchema]:
        """Every version row of a table, oldest first."""
        ...

    def jobs_of_changes(self, table_id: str, seqs: Sequence[int]) -> dict[int, str]:
        """``{change number: job id}`` of the changes a job's Commit made."""
        ...
