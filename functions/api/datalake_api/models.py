"""Request and response models of the API (kept apart from the catalog's table models)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import UnionType
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from datalake.domain.formats import MAX_TARGET_FILE_SIZE_MB, MIN_TARGET_FILE_SIZE_MB
from datalake.domain.limits import (
    BUCKET_MAX,
    DESCRIPTION_MAX,
    ID_MAX,
    KEY_MAX_BYTES,
    MAX_LIST_ITEMS,
    NAME_MAX,
)
from datalake.domain.source_objects import MAX_IGNORE_PATTERNS, MAX_PATTERN_LENGTH
from datalake.domain.vocabulary import (
    DEFAULT_SCHEMA_POLICY,
    BatchStatus,
    JobStatus,
    SchemaPolicy,
    SourceFormat,
)
from datalake.errors import InvalidInput

Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX)]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX)]
Word = Annotated[str, StringConstraints(min_length=1, max_length=32)]
#: One of a source's ignore patterns: a glob of plain text.
IgnorePattern = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATTERN_LENGTH)]
#: An ``s3://bucket/key`` URI: the scheme, a bucket and a key of at most 1,024 bytes.
S3Uri = Annotated[str, StringConstraints(min_length=6, max_length=KEY_MAX_BYTES + BUCKET_MAX + 6)]


def _policy(value: str) -> str:
    try:
        return SchemaPolicy.parse(value).value
    except InvalidInput as e:
        raise ValueError(e.message) from None


def _format(value: str) -> str:
    try:
        return SourceFormat.parse(value).value
    except InvalidInput as e:
        raise ValueError(e.message) from None


#: A schema policy as the domain reads it ("Evolve", "discard-columns"), sent on canonical.
PolicyName = Annotated[Word, AfterValidator(_policy)]
#: A source format or one of its aliases ("json"), sent on canonical.
FormatName = Annotated[Word, AfterValidator(_format)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    #: The fields that may hold a datetime (set per class from the annotations).
    _instant_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._instant_fields = tuple(
            name for name, f in cls.model_fields.items() if _may_be_datetime(f.annotation)
        )

    @model_validator(mode="after")
    def _utc(self) -> Self:
        """The catalog stores UTC; SQLite hands it back naive. Answer the same on both
        catalogs, and the same for a row just written and one read back (replays)."""
        # One call per model over its few datetime fields, not one per field: a page of
        # 50 jobs made 1,350 calls into Python, a tenth of the request's CPU.
        values = self.__dict__
        for name in self._instant_fields:
            value = values.get(name)
            if isinstance(value, datetime) and value.tzinfo is None:
                values[name] = value.replace(tzinfo=UTC)
        return self


def _may_be_datetime(annotation: Any) -> bool:
    """Whether a field's value itself may be a datetime (``datetime``, ``Any``, a union)."""
    if annotation is Any or annotation is datetime:
        return True
    if get_origin(annotation) in (Union, UnionType):
        return any(_may_be_datetime(arg) for arg in get_args(annotation))
    return False


class FieldError(BaseModel):
    """One field the request got wrong: where (``loc``), what (``msg``), which rule."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorDetails(BaseModel):
    """A refusal with structured reasons (schema violations, quality gates, ...)."""

    message: str
    errors: Any = None


class ErrorOut(BaseModel):
    """Every error answer: ``detail`` is a message, the fields at fault, or both."""

    detail: str | list[FieldError] | ErrorDetails


class IcebergError(BaseModel):
    message: str
    type: str
    code: int


class IcebergErrorOut(BaseModel):
    """The Iceberg REST specification's error answer (its own routes' 404s)."""

    error: IcebergError


class Page[T](BaseModel):
    items: list[T]
    total: int


class TableCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    namespace: Name = "default"
    description: Description | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    partitioning: list[dict[str, Any]] | None = Field(default=None, max_length=64)
    schema_policy: PolicyName = DEFAULT_SCHEMA_POLICY.value
    compatibility: Word = "BACKWARD"
    format: dict[str, Any] | None = None
    max_rejected_ratio: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)


class TableUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Description | None = None
    partitioning: list[dict[str, Any]] | None = Field(default=None, max_length=64)
    schema_policy: PolicyName | None = None
    compatibility: Word | None = None
    format: dict[str, Any] | None = None
    max_rejected_ratio: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)


class TableOut(_Out):
    id: str
    name: str
    namespace: str
    description: str | None
    partitioning: list[dict[str, Any]]
    schema_policy: str
    compatibility: str
    format: dict[str, Any]
    max_rejected_ratio: float | None = None
    current_schema_version: int | None
    schema_: dict[str, Any] | None = Field(default=None, serialization_alias="schema")
    location: str | None = None
    iceberg: dict[str, Any] | None = None  # {"identifier", "metadata_location"}
    created_at: datetime
    updated_at: datetime


class DataFileOut(_Out):
    id: str
    path: str
    partition: dict[str, Any]
    record_count: int
    size_bytes: int
    checksum: str
    schema_version: int | None
    job_id: str | None
    committed_at: datetime | None
    verified_at: datetime | None = None


class FileCheck(BaseModel):
    """One file that verification found missing, corrupt or unreadable."""

    id: str
    path: str
    partition_path: str
    job_id: str | None
    checksum: str
    actual: str | None = None
    error: str | None = None


class VerifyOut(_Out):
    """What ``POST /tables/{id}/verify`` checked and marked; call again while
    ``remaining`` is above 0 (pass ``since`` back to re-check a whole table)."""

    table_id: str
    files_checked: int
    ok: int
    missing: list[FileCheck]
    corrupt: list[FileCheck]
    errors: list[FileCheck]
    partitions_marked: int
    jobs_marked: list[str]
    remaining: int
    since: datetime | None
    #: Whether the Iceberg table no longer lists the files this call took out (null:
    #: none taken out, or Iceberg off); false: the next publish of the table retracts them.
    iceberg_published: bool | None = None
    #: When the call started, by the catalog's clock: pass it as ``since`` to the calls
    #: that follow to re-check the whole table once.
    checked_at: datetime | None = None


class FilePage(Page[DataFileOut], _Out):
    """A page of a table's files, all of one snapshot of the table.

    ``total`` counts the snapshot's files. Pass ``snapshot`` back (with ``offset``) or
    ``next`` as ``cursor`` to read the same snapshot's other pages; ``next`` is null on
    the last page. ``expires_at``: until when the snapshot is served (null: retention 0).
    """

    snapshot: str
    next: str | None = None
    expires_at: datetime | None = None


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    table_id: Id
    bucket: Annotated[str, StringConstraints(min_length=3, max_length=BUCKET_MAX)]
    prefix: Annotated[str, StringConstraints(max_length=KEY_MAX_BYTES)] = ""
    format: FormatName | None = None
    options: dict[str, Any] | None = None
    #: Glob patterns (``*.tmp``) of uploads under the prefix that start no job.
    ignore: list[IgnorePattern] | None = Field(default=None, max_length=MAX_IGNORE_PATTERNS)


class SourceOut(_Out):
    id: str
    name: str
    table_id: str
    bucket: str
    prefix: str
    format: str | None
    options: dict[str, Any]
    ignore: list[str] = []
    enabled: bool
    created_at: datetime

    @field_validator("ignore", mode="before")
    @classmethod
    def _no_patterns(cls, value: Any) -> Any:
        return [] if value is None else value


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table_id: Id
    sources: list[S3Uri] = Field(min_length=1, max_length=MAX_LIST_ITEMS)
    format: FormatName | None = None
    options: dict[str, Any] | None = None
    max_retries: int | None = Field(default=None, ge=0, le=10)
    timeout_seconds: int | None = Field(default=None, ge=10, le=86_400)


class JobOut(_Out):
    id: str
    table_id: str
    source_id: str | None
    status: JobStatus
    sources: list[str]
    format: str | None
    options: dict[str, Any]
    max_retries: int
    timeout_seconds: int
    schema_version: int | None
    records_read: int
    records_written: int
    records_rejected: int
    bytes_read: int
    bytes_written: int
    files_written: int
    batches_total: int
    batches_succeeded: int
    batches_failed: int
    error: str | None
    execution_arn: str | None
    corrupted_at: datetime | None = None
    retry_of: str | None = None
    #: ``GET /ingestion/jobs/{id}`` only (null in lists): whether a committed job's rows
    #: are in the table's Iceberg snapshot (false while COMMITTING, always true once
    #: SUCCEEDED; null for other statuses and when Iceberg is off).
    iceberg_published: bool | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    #: ``"committing"`` while a job reported RUNNING has committed its files and is being
    #: published as Iceberg (it can no longer fail or be cancelled); else null.
    phase: str | None = None

    @model_validator(mode="after")
    def _reported_status(self) -> Self:
        """Answer the contract's statuses: the catalog's COMMITTING reads RUNNING, with
        its ``phase``; SUCCEEDED comes only once every reader sees the job."""
        if self.status is JobStatus.COMMITTING:
            self.phase = self.status.phase
            self.status = self.status.reported
        return self


class BatchOut(_Out):
    id: str
    job_id: str
    seq: int
    split: dict[str, Any]
    status: BatchStatus
    attempts: int
    records_read: int
    records_written: int
    records_rejected: int
    bytes_read: int
    bytes_written: int
    files_written: int
    discarded_columns: list[str]
    quarantine_key: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class RejectsOut(BaseModel):
    """A job's rejected records (``GET /ingestion/jobs/{id}/rejects``): the first ``limit``
    of ``total`` in plan order, each with its ``source``, ``row``, ``column``, ``value`` and
    ``error``. ``gone`` is true when records were rejected and their quarantine objects no
    longer exist (``missing``); ``note`` says so in one sentence."""

    job_id: str
    records_rejected: int
    total: int
    items: list[dict[str, Any]]
    missing: list[str]
    gone: bool
    note: str | None


class SchemaVersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table_id: Id
    schema_: dict[str, Any] = Field(alias="schema")
    description: Description | None = None


class SchemaApply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Description | None = None


class SchemaVersionOut(_Out):
    """A schema version; ``changes`` are its SchemaChange rows (from its parent version)."""

    id: str
    table_id: str
    version: int
    schema_: dict[str, Any] = Field(serialization_alias="schema")
    description: str | None
    source: str
    parent_version: int | None
    job_id: str | None
    created_by: str | None
    created_at: datetime
    changes: list[dict[str, Any]]


class SchemaCompare(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old: dict[str, Any] | Id
    new: dict[str, Any] | Id
    mode: Annotated[str, StringConstraints(max_length=32)] | None = None


class SchemaCompareOut(BaseModel):
    changes: list[dict[str, Any]]
    compatible: dict[str, bool]
    mode: str


class PartitionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table_id: Id
    values: dict[str, Any] = Field(max_length=64)


class PartitionOut(_Out):
    id: str
    table_id: str
    path: str
    values: dict[str, Any]
    record_count: int
    file_count: int
    size_bytes: int
    stats: dict[str, Any]
    corrupt_files: int = 0
    created_at: datetime
    updated_at: datetime


class OptimizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_file_size_mb: float | None = Field(
        default=None, ge=MIN_TARGET_FILE_SIZE_MB, le=MAX_TARGET_FILE_SIZE_MB
    )
    partition_id: Id | None = None


class OptimizeAccepted(BaseModel):
    table_id: str
    status: str
    partition_id: str | None
    target_file_size_mb: float
    request_id: str | None
    partitions_to_compact: int
    #: Names the run: ``GET /partitions/table/{table_id}/optimize/{run_id}`` says when it ends.
    run_id: str


class OptimizeRunOut(_Out):
    """Where an optimize run is: ``ACCEPTED`` until it ends, then its own status
    (``DONE``, ``PARTIAL``, ``FAILED``, ``NOT_FOUND``) and what it did."""

    model_config = ConfigDict(from_attributes=True, extra="allow")

    table_id: str
    run_id: str
    status: str
    at: datetime | None = None
