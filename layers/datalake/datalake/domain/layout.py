"""Where a job's objects live in the lake: the one owner of the key layout.

Every attempt at a batch writes under keys of its own (the attempt token is part of
each name), so a second delivery of the same batch message can never overwrite, and
therefore never delete, the objects of another attempt, least of all committed ones:

    <namespace>/<table>/<partition path>/part-<job>-<seq:05d>-<attempt>-<n:04d>.parquet
    <quarantine>/<namespace>/<table>/job=<job>/<job>-<seq:05d>-<attempt>.jsonl
    _plans/<job>/batches.json   (the batch list the state machine's Map reads)

Pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import re
import secrets

#: An attempt token: short, random, safe in an object key.
_ATTEMPT = re.compile(r"^[0-9a-f]{8,32}$")


def table_prefix(namespace: str, name: str) -> str:
    """Where a table's data files live in the lake bucket (no trailing slash)."""
    return f"{namespace}/{name}"


def new_attempt() -> str:
    """A fresh attempt token: unique per worker attempt, also when two run at once."""
    return secrets.token_hex(6)


def attempt_file_prefix(job_id: str, seq: int, attempt: str) -> str:
    """The name stem of the files one attempt at batch ``seq`` of ``job_id`` writes.

    Parameters
    ----------
    job_id, seq:
        The batch's job and its plan position.
    attempt:
        The attempt's token (:func:`new_attempt`).

    Raises
    ------
    ValueError
        When ``attempt`` is not a token of :func:`new_attempt`'s shape.
    """
    if not _ATTEMPT.match(attempt):
        raise ValueError(f"not an attempt token: {attempt!r}")
    return f"{job_id}-{seq:05d}-{attempt}"


def job_file_marker(job_id: str) -> str:
    """The part of every data-file name written for ``job_id`` (for orphan sweeps)."""
    return f"part-{job_id}-"


def job_quarantine_prefix(quarantine_root: str, namespace: str, name: str, job_id: str) -> str:
    """The folder (no trailing slash) of the rejected records of one job."""
    return f"{quarantine_root.strip('/')}/{table_prefix(namespace, name)}/job={job_id}"


def job_plan_key(job_id: str) -> str:
    """Where Plan writes a job's batch list for the Distributed Map to read."""
    return f"_plans/{job_id}/batches.json"
