"""Which errors a retry cannot clear: a batch that raises one fails at its first attempt."""

from __future__ import annotations

import pytest

from datalake import errors
from datalake.services.jobs import JobCancelled


@pytest.mark.parametrize(
    "error",
    [errors.InvalidInput("day(ts) needs a date or timestamp column, not string"),
     errors.SchemaMismatch("source columns not in the table schema: b"),
     errors.CorruptInput("cannot parse CSV"), errors.SourceChanged("replaced"),
     errors.NotFound("no object"), errors.IncompatibleSchema("breaks BACKWARD")],
)
def test_bad_input_is_deterministic(error: Exception) -> None:
    assert errors.is_deterministic(error)


@pytest.mark.parametrize(
    "error",
    [errors.TransientError("connection dropped"), errors.CommitConflict("lost a race"),
     errors.BatchTimeout("past its budget"), ConnectionError("reset"), OSError("disk"),
     JobCancelled("cancelled"), errors.DatalakeError("unclassified")],
)
def test_faults_a_retry_may_clear_are_not(error: Exception) -> None:
    assert not errors.is_deterministic(error)
