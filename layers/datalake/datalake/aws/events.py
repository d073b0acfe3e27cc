"""The events the functions receive, parsed into models instead of indexed as dicts.

Each model names the fields its handler reads and ignores the rest, so the state
machine (``infra/ingest_job.asl.json``), S3 and CloudFormation may add fields freely.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class JobEvent(_Event):
    """What the state machine passes the Plan and Commit tasks."""

    job_id: str
    #: The job's correlation id (logs); absent in executions from before it was added.
    correlation_id: str | None = None


class TaskFailure(_Event):
    """A state's ``Catch`` output: the error name and its cause."""

    error: str = Field(default="Error", alias="Error")
    cause: str = Field(default="", alias="Cause")

    @field_validator("error", "cause", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return value if isinstance(value, str) else json.dumps(value, default=str)

    @property
    def message(self) -> str:
        """The cause's own message: a Lambda's failure is a JSON document whose
        ``errorMessage`` says what went wrong; any other cause is taken as it is."""
        try:
            parsed = json.loads(self.cause)
        except ValueError:
            return self.cause
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            return str(parsed["errorMessage"])
        return self.cause


class AbortEvent(JobEvent):
    """What the state machine passes the Abort task: the job and the error it caught."""

    error: TaskFailure | str = Field(default_factory=TaskFailure)

    @field_validator("error", mode="before")
    @classmethod
    def _failure(cls, value: object) -> object:
        if not value:
            return {}
        return value if isinstance(value, dict) else str(value)

    @property
    def error_text(self) -> str:
        """``"<Error>: <message>"``, the text recorded on the failed job."""
        if isinstance(self.error, TaskFailure):
            return f"{self.error.error}: {self.error.message}".strip()
        return self.error


class OptimizeEvent(_Event):
    """An optimize request from the API or the Compact state; a schedule's event names
    no table (then every live table is compacted)."""

    table_id: str | None = None
    partition_id: str | None = None
    target_file_size_mb: float | None = None
    requested_by: str | None = None
    #: The API's name for the run (its end is recorded under it); absent from a schedule.
    run_id: str | None = None
    correlation_id: str | None = None
    #: Only publish ``table_id`` as Iceberg (the API's synchronous request after a
    #: verification took files out), no compaction.
    publish_only: bool = False

    @field_validator("table_id", "partition_id", "requested_by", "run_id", "correlation_id",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    @property
    def actor(self) -> str:
        """Who the run is recorded as."""
        return self.requested_by or "system:optimize"


class S3Upload(_Event):
    """One object an S3 ``ObjectCreated`` notification names (its key URL-decoded)."""

    bucket: str
    key: str
    etag: str | None = None
    sequencer: str | None = None
    #: The object's size in bytes (``None`` when the event names none).
    size: int | None = None


class _S3Bucket(_Event):
    name: str


class _S3Object(_Event):
    key: str
    etag: str | None = Field(default=None, alias="eTag")
    sequencer: str | None = None
    size: int | None = None


class _S3Entity(_Event):
    bucket: _S3Bucket
    object: _S3Object


class _S3Record(_Event):
    event_name: str = Field(default="", alias="eventName")
    s3: _S3Entity | None = None


class S3Notification(_Event):
    """The body of an S3 event notification delivered through SQS."""

    records: list[_S3Record] = Field(default_factory=list, alias="Records")

    def uploads(self) -> list[S3Upload]:
        """The objects created (``s3:TestEvent`` and other events name none)."""
        return [
            S3Upload(
                bucket=r.s3.bucket.name,
                key=unquote_plus(r.s3.object.key),
                etag=r.s3.object.etag,
                sequencer=r.s3.object.sequencer,
                size=r.s3.object.size,
            )
            for r in self.records
            if r.event_name.startswith("ObjectCreated") and r.s3 is not None
        ]


class CustomResourceEvent(_Event):
    """A CloudFormation custom resource request; a direct invoke carries none of it."""

    request_type: str | None = Field(default=None, alias="RequestType")
    response_url: str = Field(default="", alias="ResponseURL")
    stack_id: str = Field(default="", alias="StackId")
    request_id: str = Field(default="", alias="RequestId")
    logical_resource_id: str = Field(default="", alias="LogicalResourceId")
    physical_resource_id: str | None = Field(default=None, alias="PhysicalResourceId")

    @property
    def from_cloudformation(self) -> bool:
        """Whether CloudFormation waits for an answer at ``response_url``."""
        return self.request_type is not None
