"""The product's words, written once: statuses, policies, formats, codecs and defaults.

Every layer (catalog models, services, engine, handlers, the API's models) names these
members instead of restating the strings, so a new status or format is added here and
nowhere else. They are :class:`~enum.StrEnum` members: they compare equal to, and
serialise as, the plain strings stored in the catalog and shown by the API.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from datalake.errors import InvalidInput

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_COMPRESSION",
    "DEFAULT_SCHEMA_POLICY",
    "DEFAULT_SPLIT_SIZE_MB",
    "DEFAULT_TARGET_FILE_SIZE_MB",
    "SOURCE_FORMAT_ALIASES",
    "BatchStatus",
    "Compression",
    "FileStatus",
    "JobStatus",
    "SchemaPolicy",
    "SourceFormat",
]


def _choice[E: StrEnum](enum: type[E], value: object, what: str, text: str) -> E:
    """The member of ``enum`` named by ``text`` (already normalised), or InvalidInput."""
    try:
        return enum(text)
    except ValueError:
        expected = [m.value for m in enum]
        raise InvalidInput(f"{what} must be one of {expected}, got {value!r}") from None


class JobStatus(StrEnum):
    """An ingestion job's life: PENDING -> RUNNING -> COMMITTING -> SUCCEEDED, or
    FAILED | CANCELLED from PENDING or RUNNING.

    COMMITTING: the job's files are committed in the catalog and its Iceberg snapshot is
    being published; such a job can only finish (SUCCEEDED), never fail or be cancelled.
    SUCCEEDED therefore means every reader, ours and Iceberg's, sees the job's rows.
    COMMITTING is the catalog's own word: the API reports such a job as RUNNING with
    ``phase: "committing"`` (:attr:`reported`), since clients know the contract's five
    statuses and a job that is publishing has not finished.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMMITTING = "COMMITTING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        """True for the statuses a job never leaves."""
        return self in _JOB_FINISHED

    @property
    def reported(self) -> JobStatus:
        """The status the API answers for this one (COMMITTING reads RUNNING)."""
        return JobStatus.RUNNING if self is JobStatus.COMMITTING else self

    @property
    def phase(self) -> str | None:
        """What a job reported as RUNNING is doing, when it is past its batches."""
        return "committing" if self is JobStatus.COMMITTING else None

    def stored(self) -> tuple[JobStatus, ...]:
        """The catalog statuses that the API reports as this one (for a status filter)."""
        if self is JobStatus.RUNNING:
            return (JobStatus.RUNNING, JobStatus.COMMITTING)
        return (self,)


_JOB_FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class BatchStatus(StrEnum):
    """A batch's life: PENDING -> RUNNING -> SUCCEEDED | FAILED; a FAILED batch may run
    again (a retry). PENDING or RUNNING -> CANCELLED when its job is cancelled or fails
    first: no attempt at it is recorded any more (a FAILED one keeps its error)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        """True for the statuses no attempt changes any more."""
        return self in _BATCH_FINISHED


_BATCH_FINISHED = frozenset({BatchStatus.SUCCEEDED, BatchStatus.CANCELLED})


class FileStatus(StrEnum):
    """A data file's life.

    PENDING (written, not visible) -> COMMITTED (visible) -> REPLACED (compacted away, or
    retired by the commit of a retry of its job); COMMITTED -> CORRUPT when verification
    finds the object missing or altered.
    """

    PENDING = "PENDING"
    COMMITTED = "COMMITTED"
    REPLACED = "REPLACED"
    CORRUPT = "CORRUPT"


class SchemaPolicy(StrEnum):
    """What an ingestion does with columns the table does not have."""

    EVOLVE = "evolve"
    FREEZE = "freeze"
    DISCARD_COLUMNS = "discard_columns"

    @classmethod
    def parse(cls, value: str | None) -> Self:
        """The policy a user wrote, in any case, with ``-`` or ``_`` (``None``: the default).

        Parameters
        ----------
        value:
            ``evolve``, ``freeze`` or ``discard_columns``; ``"Evolve"`` and
            ``"discard-columns"`` name the same policies.

        Raises
        ------
        InvalidInput
            When ``value`` names no policy.
        """
        if value is None:
            return cls(DEFAULT_SCHEMA_POLICY)
        text = str(value).strip().lower().replace("-", "_")
        return _choice(cls, value, "schema_policy", text)


class SourceFormat(StrEnum):
    """The source file formats the engine reads."""

    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"
    AVRO = "avro"

    @classmethod
    def parse(cls, value: str) -> Self:
        """The format a user wrote, in any case, or one of its :data:`SOURCE_FORMAT_ALIASES`.

        Raises
        ------
        InvalidInput
            When ``value`` names no format.
        """
        text = str(value).strip().lower()
        alias = SOURCE_FORMAT_ALIASES.get(text)
        if alias is not None:
            return cls(alias)
        try:
            return cls(text)
        except ValueError:
            expected = [m.value for m in cls] + list(SOURCE_FORMAT_ALIASES)
            raise InvalidInput(f"format must be one of {expected}, got {value!r}") from None


#: Other names users write for a :class:`SourceFormat`.
SOURCE_FORMAT_ALIASES: dict[str, SourceFormat] = {
    "json": SourceFormat.JSONL,
    "ndjson": SourceFormat.JSONL,
    "jsonlines": SourceFormat.JSONL,
    "tsv": SourceFormat.CSV,
}


class Compression(StrEnum):
    """Parquet codecs a table's files may be written with."""

    SNAPPY = "snappy"
    ZSTD = "zstd"
    GZIP = "gzip"
    BROTLI = "brotli"
    LZ4 = "lz4"
    NONE = "none"

    @classmethod
    def parse(cls, value: str) -> Self:
        """The codec a user wrote, in any case.

        Raises
        ------
        InvalidInput
            When ``value`` names no codec.
        """
        return _choice(cls, value, "compression", str(value).strip().lower())


#: The policy of a table created without one.
DEFAULT_SCHEMA_POLICY = SchemaPolicy.EVOLVE
#: The codec of a table created without one.
DEFAULT_COMPRESSION = Compression.SNAPPY
#: The size a table's files are written and compacted towards.
DEFAULT_TARGET_FILE_SIZE_MB = 128
#: The size of one source slice a batch reads.
DEFAULT_SPLIT_SIZE_MB = 128
#: Records per streaming chunk inside a worker, for a job that names none.
DEFAULT_BATCH_SIZE = 10_000
