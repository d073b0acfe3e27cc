"""Verify and rebuild in-process: moto S3, a real catalog (SQLite and Postgres), the engine.

A job is ingested (Plan -> batches -> Commit), one of its committed objects is tampered
with and another deleted; verification finds both, and a retry of the job rebuilds the
table so that its rows equal the source exactly, each once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, DataLakePartition, IngestionJob
from datalake.errors import Conflict
from datalake.services import compaction, jobs, rebuild, tables, verify
from tests.fakes import LAKE, FakeOrchestrator
from tests.functional.test_pipeline import CSV, new_job, read_committed, run_all, store


def expected_rows() -> dict[int, tuple[str, str, int | None]]:
    """The source CSV as id -> (ts, carrier, delay)."""
    out = {}
    for line in CSV.splitlines()[1:]:
        i, ts, carrier, delay = line.split(",")
        out[int(i)] = (ts, carrier, None if delay == "NA" else int(delay))
    return out


def committed_rows(s3: Any, table_id: str) -> list[tuple[int, str, str, int | None]]:
    data = read_committed(s3, table_id).to_pydict()
    return [
        (i, ts.strftime("%Y-%m-%d %H:%M:%S"), carrier, delay)
        for i, ts, carrier, delay in zip(
            data["id"], data["ts"], data["carrier"], data["delay"], strict=True
        )
    ]


def ingest(s3: Any) -> tuple[str, str]:
    table_id, job_id = new_job(s3, split_size_mb=0.01, batch_size=100)
    run_all(job_id)
    jobs.publish_job(job_id, store=store())
    return table_id, job_id


def files_of(table_id: str) -> list[DataFile]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(DataFile).where(DataFile.table_id == table_id).order_by(DataFile.key)
            ).all()
        )


def partitions_of(table_id: str) -> dict[str, DataLakePartition]:
    with session_scope() as session:
        rows = session.scalars(
            select(DataLakePartition).where(DataLakePartition.table_id == table_id)
        ).all()
        return {p.path: p for p in rows}


def assert_partitions_match_files(table_id: str) -> None:
    """Every partition's counts equal the sums over its committed files."""
    committed = [f for f in files_of(table_id) if f.status == "COMMITTED"]
    for path, part in partitions_of(table_id).items():
        mine = [f for f in committed if f.partition_path == path]
        assert part.record_count == sum(f.record_count for f in mine), path
        assert part.file_count == len(mine), path
        assert part.size_bytes == sum(f.size_bytes for f in mine), path


def tamper(s3: Any, f: DataFile) -> None:
    """Overwrite a committed object with other bytes of the same length."""
    body = bytearray(s3.get_object(Bucket=f.bucket, Key=f.key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=f.bucket, Key=f.key, Body=bytes(body))


def test_verify_marks_a_tampered_and_a_missing_file(s3: Any) -> None:
    table_id, job_id = ingest(s3)
    before = files_of(table_id)
    assert len(before) >= 4 and {f.status for f in before} == {"COMMITTED"}
    bad, gone = before[0], before[-1]
    assert bad.partition_path != gone.partition_path
    tamper(s3, bad)
    s3.delete_object(Bucket=gone.bucket, Key=gone.key)
    parts_before = partitions_of(table_id)

    with session_scope() as session:
        report = verify.verify_table(session, table_id, store=store())

    assert report.files_checked == len(before)
    assert report.ok == len(before) - 2
    assert [c["path"] for c in report.corrupt] == [f"s3://{LAKE}/{bad.key}"]
    assert report.corrupt[0]["actual"] != bad.checksum
    assert [m["path"] for m in report.missing] == [f"s3://{LAKE}/{gone.key}"]
    assert report.partitions_marked == 2
    assert report.jobs_marked == [job_id]
    assert report.remaining == 0 and not report.errors

    after = {f.id: f for f in files_of(table_id)}
    assert after[bad.id].status == after[gone.id].status == "CORRUPT"
    good = [f for f in after.values() if f.status == "COMMITTED"]
    assert len(good) == len(before) - 2 and all(f.verified_at is not None for f in good)
    parts = partitions_of(table_id)
    for f in (bad, gone):
        was, now = parts_before[f.partition_path], parts[f.partition_path]
        assert now.corrupt_files == 1
        assert now.record_count == was.record_count - f.record_count
        assert now.file_count == was.file_count - 1
        assert now.size_bytes == was.size_bytes - f.size_bytes
    assert_partitions_match_files(table_id)
    with session_scope() as session:
        assert jobs.get_job(session, job_id).corrupted_at is not None
        listed, total = tables.committed_files(session, table_id)
        assert total == len(before) - 2 and bad.id not in {f.id for f in listed}
    assert len(committed_rows(s3, table_id)) == 2000 - bad.record_count - gone.record_count

    # A second pass finds nothing new and marks nothing twice.
    with session_scope() as session:
        again = verify.verify_table(session, table_id, store=store())
    assert again.files_checked == len(before) - 2 and again.ok == again.files_checked
    assert again.partitions_marked == 0 and again.jobs_marked == []
    assert partitions_of(table_id)[bad.partition_path].corrupt_files == 1


def test_verify_checks_at_most_limit_files_per_call(s3: Any) -> None:
    table_id, _ = ingest(s3)
    total = len(files_of(table_id))
    seen: set[str] = set()
    calls = 0
    remaining = total
    while remaining:
        with session_scope() as session:
            report = verify.verify_table(session, table_id, store=store(), limit=3)
        calls += 1
        assert report.files_checked == min(3, remaining)
        assert report.remaining == max(remaining - 3, 0)
        remaining = report.remaining
        seen |= {f.id for f in files_of(table_id) if f.verified_at is not None}
    assert calls == -(-total // 3) and len(seen) == total


def test_retry_of_a_corrupted_job_rebuilds_the_table_exactly(s3: Any) -> None:
    table_id, job_id = ingest(s3)
    before = files_of(table_id)
    tamper(s3, before[1])
    with session_scope() as session:
        report = verify.verify_table(session, table_id, store=store())
    assert [c["id"] for c in report.corrupt] == [before[1].id] and report.jobs_marked == [job_id]

    with session_scope() as session:
        old = jobs.get_job(session, job_id)
        new = rebuild.retry_job(session, job_id, actor="tester")
        assert new.status == "PENDING" and new.retry_of == job_id and new.id != job_id
        for name in ("table_id", "sources", "format", "options", "max_retries",
                     "timeout_seconds"):
            assert getattr(new, name) == getattr(old, name), name
        new_id = new.id
    with session_scope() as session, pytest.raises(Conflict, match="retried already"):
        rebuild.retry_job(session, job_id)
    with session_scope() as session:
        jobs.start_job(session, new_id, orchestrator=FakeOrchestrator())
    run_all(new_id)
    # Until the retry commits, the old job's good files are the table.
    assert len(committed_rows(s3, table_id)) == 2000 - before[1].record_count
    jobs.publish_job(new_id, store=store())

    rows = committed_rows(s3, table_id)
    assert Counter(r[0] for r in rows) == Counter(range(2000)), "each id exactly once"
    assert {r[0]: r[1:] for r in rows} == expected_rows()
    assert sum(p.record_count for p in partitions_of(table_id).values()) == 2000
    assert_partitions_match_files(table_id)
    by_job = Counter((f.job_id, f.status) for f in files_of(table_id))
    assert by_job[(job_id, "COMMITTED")] == 0
    assert by_job[(job_id, "CORRUPT")] == 1
    assert by_job[(job_id, "REPLACED")] == len(before) - 1
    with session_scope() as session:
        retired = session.scalars(
            select(DataFile).where(DataFile.job_id == job_id, DataFile.status == "REPLACED")
        ).all()
        assert all(f.replaced_at is not None for f in retired)
        assert jobs.get_job(session, new_id).status == "SUCCEEDED"
        # The old job is rebuilt: no second rebuild of it, nor of its healthy retry.
        with pytest.raises(Conflict):
            rebuild.retry_job(session, job_id)
        with pytest.raises(Conflict, match="SUCCEEDED and not corrupted"):
            rebuild.retry_job(session, new_id)
    # The retired files go the way of compacted ones: the next optimize run sweeps them.
    assert compaction.sweep_replaced(table_id, store(), retention_seconds=0) == len(before) - 1
    assert Counter(r[0] for r in committed_rows(s3, table_id)) == Counter(range(2000))


def test_a_failed_retry_then_its_retry_still_rebuild_once(s3: Any) -> None:
    table_id, job_id = ingest(s3)
    tamper(s3, files_of(table_id)[0])
    with session_scope() as session:
        verify.verify_table(session, table_id, store=store())
    with session_scope() as session:
        first = rebuild.retry_job(session, job_id).id
    with session_scope() as session:
        jobs.cancel_job(session, first, orchestrator=None, store=store())
    with session_scope() as session:
        second = rebuild.retry_job(session, first).id  # a retry of the cancelled retry
        jobs.start_job(session, second, orchestrator=FakeOrchestrator())
    run_all(second)
    jobs.publish_job(second, store=store())
    rows = committed_rows(s3, table_id)
    assert Counter(r[0] for r in rows) == Counter(range(2000))
    assert_partitions_match_files(table_id)


def test_compaction_leaves_a_corrupted_jobs_files_for_its_rebuild(s3: Any) -> None:
    table_id, job_id = ingest(s3)
    tamper(s3, files_of(table_id)[0])
    with session_scope() as session:
        verify.verify_table(session, table_id, store=store())
    summary = compaction.compact_table(table_id, store=store())
    assert summary.files_replaced == 0
    with session_scope() as session:
        retry = rebuild.retry_job(session, job_id)  # still rebuildable
        assert retry.retry_of == job_id


def test_a_job_whose_rows_were_compacted_away_is_not_rebuilt(s3: Any) -> None:
    table_id, job_id = ingest(s3)
    summary = compaction.compact_table(table_id, store=store())
    assert summary.files_replaced > 0
    with session_scope() as session:
        job = session.get(IngestionJob, job_id)
        assert job is not None
        job.corrupted_at = job.finished_at  # as if a compacted file had been found corrupt
    with session_scope() as session, pytest.raises(Conflict, match="duplicate rows"):
        rebuild.retry_job(session, job_id)
