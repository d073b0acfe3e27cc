"""Following a job: a rich progress bar on a terminal, plain progress lines elsewhere."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from datalake.cli.client import ApiClient, ApiError
from datalake.domain.vocabulary import BatchStatus, JobStatus

FINISHED = tuple(s for s in JobStatus if s.finished)
_STYLES = {JobStatus.SUCCEEDED: "green", JobStatus.FAILED: "red", JobStatus.CANCELLED: "yellow"}
#: Seconds between two reads of the job.
POLL_S = 1.0
#: How long ``follow`` waits, after a job SUCCEEDED, for its Iceberg snapshot (Commit
#: publishes it right after; longer only when Commit is being retried).
ICEBERG_WAIT_S = 120.0


#: Pages of batches read per poll while a job runs (1,000 each).
MAX_BATCH_PAGES = 10


def _done(job: dict[str, Any]) -> int:
    return int(job.get("batches_succeeded") or 0) + int(job.get("batches_failed") or 0)


def with_batch_progress(api: ApiClient, job: dict[str, Any]) -> dict[str, Any]:
    """The job, with its counters summed from its batches while it runs.

    The job row's own counters are rolled up at Commit; until then the finished batches
    say how far it is.
    """
    if job["status"] != JobStatus.RUNNING or not job.get("batches_total"):
        return job
    path = f"/api/v1/ingestion/jobs/{job['id']}/batches"
    batches: list[dict[str, Any]] = []
    try:
        for page in range(MAX_BATCH_PAGES):
            items = api.get(path, limit=1000, offset=page * 1000)["items"]
            batches.extend(items)
            if len(items) < 1000:
                break
    except ApiError:
        return job  # progress is best effort; the job itself still says where it is
    finished = [b for b in batches if b["status"] == BatchStatus.SUCCEEDED]
    return {
        **job,
        "batches_succeeded": len(finished),
        "batches_failed": sum(1 for b in batches if b["status"] == BatchStatus.FAILED),
        "records_read": sum(b["records_read"] for b in finished),
        "records_written": sum(b["records_written"] for b in finished),
        "records_rejected": sum(b["records_rejected"] for b in finished),
    }


def progress_line(job: dict[str, Any]) -> str:
    """One line saying how far a job is (the non-terminal progress output)."""
    total = job.get("batches_total") or 0
    committing = job.get("phase") == "committing" or job.get("iceberg_published") is False
    publishing = ", publishing as Iceberg" if committing else ""
    return (
        f"job {job['id']} {job['status']}: batches {_done(job)}/{total}, records read "
        f"{job.get('records_read', 0):,} written {job.get('records_written', 0):,} "
        f"rejected {job.get('records_rejected', 0):,}{publishing}"
    )


def _records_text(job: dict[str, Any]) -> str:
    return (
        f"{job.get('records_read', 0):,} read, {job.get('records_written', 0):,} written, "
        f"{job.get('records_rejected', 0):,} rejected"
    )


def follow(
    api: ApiClient,
    job_id: str,
    *,
    console: Console,
    quiet: bool = False,
    poll_seconds: float = POLL_S,
) -> dict[str, Any]:
    """Poll a job until it finishes; return its last state.

    Parameters
    ----------
    api:
        The API client.
    job_id:
        The job to follow.
    console:
        Where progress goes (stderr, so that stdout holds only the result). On a
        terminal a live bar of batches and records; otherwise a line per change.
    quiet:
        No progress output at all (``--json`` outside a terminal).
    poll_seconds:
        Seconds between reads of the job.
    """
    path = f"/api/v1/ingestion/jobs/{job_id}"
    succeeded_at: list[float] = []

    def read() -> dict[str, Any]:
        return with_batch_progress(api, dict(api.call("GET", path)))

    def finished(job: dict[str, Any]) -> bool:
        # A job reads SUCCEEDED only once its Iceberg snapshot is published (RUNNING with
        # phase "committing" until then); a server that said SUCCEEDED before its publish
        # (iceberg_published false) is waited for, up to ICEBERG_WAIT_S.
        if job["status"] != JobStatus.SUCCEEDED or job.get("iceberg_published") is not False:
            return job["status"] in FINISHED
        succeeded_at[:1] = succeeded_at[:1] or [time.monotonic()]
        if time.monotonic() - succeeded_at[0] < ICEBERG_WAIT_S:
            return False
        if not quiet:
            console.print(f"job {job_id[:8]} SUCCEEDED; not yet published as Iceberg "
                          f"after {ICEBERG_WAIT_S:.0f}s (Commit is being retried)",
                          highlight=False, markup=False)
        return True

    job = read()
    if quiet or not console.is_terminal:
        last = ""
        while True:
            line = progress_line(job)
            if not quiet and line != last:
                console.print(line, highlight=False, markup=False, soft_wrap=True)
                last = line
            if finished(job):
                return job
            time.sleep(poll_seconds)
            job = read()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("batches"),
        TextColumn("{task.fields[records]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(
            f"job {job_id[:8]} {job['status']}", total=job.get("batches_total") or None,
            records=_records_text(job),
        )
        while True:
            bar.update(
                task,
                description=f"job {job_id[:8]} {job['status']}",
                total=job.get("batches_total") or None,
                completed=_done(job),
                records=_records_text(job),
            )
            if finished(job):
                return job
            time.sleep(poll_seconds)
            job = read()


def _duration(job: dict[str, Any]) -> str:
    start, end = job.get("started_at") or job.get("created_at"), job.get("finished_at")
    if not start or not end:
        return ""
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return ""
    return f"{seconds:.1f} s"


def summary_table(job: dict[str, Any], table_files: int | None = None) -> Table:
    """A job's outcome as a table: status, records, bytes, files, batches, time, error.

    ``files_written`` is the job's own count; compaction merges files afterwards, so the
    table's current count (``table_files``, when known) is shown beside it.
    """
    style = _STYLES.get(job["status"], "")
    t = Table(title=f"job {job['id']}", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value", justify="right", overflow="fold")
    t.add_row("status", f"[{style}]{job['status']}[/]" if style else job["status"])
    for key in ("records_read", "records_written", "records_rejected", "bytes_read",
                "bytes_written"):
        if key in job:
            t.add_row(key.replace("_", " "), f"{job[key]:,}")
    if "files_written" in job:
        t.add_row("files written by the job", f"{job['files_written']:,}")
    if table_files is not None:
        t.add_row("files in the table now", f"{table_files:,}")
    t.add_row("batches", f"{job.get('batches_succeeded', 0)} succeeded, "
                         f"{job.get('batches_failed', 0)} failed of {job.get('batches_total', 0)}")
    if _duration(job):
        t.add_row("duration", _duration(job))
    if job.get("error"):
        t.add_row("error", str(job["error"]))
    return t
