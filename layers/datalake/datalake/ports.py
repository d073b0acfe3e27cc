"""Interfaces the services need from the outside world, named for their role."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO, Protocol


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
