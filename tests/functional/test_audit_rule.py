"""One audit rule: a service records the audit event of its change, in the change's
transaction; callers (routes, handlers, scripts) record nothing themselves."""

from __future__ import annotations

from typing import Any

import pytest

from datalake.catalog.db import session_scope
from datalake.errors import Conflict
from datalake.services import audit, jobs, sources, tables
from tests.fakes import FakeDeleter, FakeOrchestrator

SCHEMA = {"fields": [{"name": "id", "type": "long"}]}
SOURCE = "s3://datalake-landing/in/a.csv"


def _trail() -> list[tuple[str, str, str | None, dict[str, Any]]]:
    with session_scope() as session:
        events, _ = audit.list_events(session, limit=100)
        return [(e.action, e.actor, e.correlation_id, dict(e.details)) for e in reversed(events)]


def test_each_change_of_a_service_records_who_made_it(use_catalog: str) -> None:
    with session_scope() as session:
        table = tables.create_table(
            session, name="t", schema=SCHEMA, actor="alice", correlation_id="c-1"
        )
        tid = table.id
    with session_scope() as session:
        tables.update_table(session, tid, {"description": "d"}, actor="bob", correlation_id="c-2")
        sources.create_source(
            session, name="s", table_id=tid, bucket="datalake-landing", actor="bob",
            correlation_id="c-2",
        )
        job = jobs.create_job(
            session, table_id=tid, sources=[SOURCE], actor="carol", correlation_id="c-3"
        )
        jid = job.id
    with session_scope() as session:
        jobs.start_job(
            session, jid, orchestrator=FakeOrchestrator(), actor="carol", correlation_id="c-3",
            details={"object": SOURCE},
        )
    with session_scope() as session:
        jobs.cancel_job(
            session, jid, orchestrator=FakeOrchestrator(), store=FakeDeleter(), actor="dave"
        )
    with session_scope() as session:
        tables.delete_table(session, tid, actor="erin", correlation_id="c-5")

    trail = _trail()
    # Events of one flush may share a timestamp: compare them as a set.
    assert sorted((a, who, cid or "") for a, who, cid, _ in trail) == sorted([
        ("table.create", "alice", "c-1"),
        ("table.update", "bob", "c-2"),
        ("source.create", "bob", "c-2"),
        ("job.create", "carol", "c-3"),
        ("job.start", "carol", "c-3"),
        ("job.cancel", "dave", ""),
        ("table.delete", "erin", "c-5"),
    ])
    details = {a: d for a, _, _, d in trail}
    assert details["table.update"] == {"changes": {"description": "d"}}
    assert details["job.create"] == {"table_id": tid, "sources": [SOURCE]}
    assert details["job.start"]["object"] == SOURCE
    assert details["job.start"]["execution_arn"].endswith(jid)


def test_a_refused_change_records_nothing(use_catalog: str) -> None:
    with session_scope() as session:
        tables.create_table(session, name="t", actor="alice")
    with pytest.raises(Conflict, match="already exists"), session_scope() as session:
        tables.create_table(session, name="t", actor="mallory")
    assert [(a, who) for a, who, _, _ in _trail()] == [("table.create", "alice")]


class _BrokenStore(FakeDeleter):
    def list(self, bucket: str, prefix: str) -> list[Any]:
        raise OSError("S3 is down")


def test_a_cancel_is_audited_with_the_cancel_even_when_its_clean_up_fails(
    use_catalog: str,
) -> None:
    with session_scope() as session:
        tid = tables.create_table(session, name="t", schema=SCHEMA).id
        jid = jobs.create_job(session, table_id=tid, sources=[SOURCE]).id
    with session_scope() as session:
        job = jobs.cancel_job(session, jid, orchestrator=None, store=_BrokenStore(), actor="dave")
        assert job.status == "CANCELLED"
    assert ("job.cancel", "dave") in [(a, who) for a, who, _, _ in _trail()]


def test_an_upload_records_one_start_per_job_even_when_redelivered(use_catalog: str) -> None:
    from datalake.services.uploads import start_jobs_for_upload

    with session_scope() as session:
        tid = tables.create_table(session, name="up", schema=SCHEMA, actor="alice").id
        sources.create_source(session, name="s", table_id=tid, bucket="datalake-landing",
                              prefix="in/", actor="alice")
    for _ in range(2):  # SQS delivers the same upload event twice
        start_jobs_for_upload("datalake-landing", "in/a.csv", etag="e1", sequencer="01",
                              orchestrator=FakeOrchestrator(), correlation_id="s3-event-1")
    starts = [(who, cid, d) for a, who, cid, d in _trail() if a == "job.start"]
    assert len(starts) == 1, starts
    who, cid, details = starts[0]
    assert (who, cid) == ("source:s", "s3-event-1")
    assert details["object"] == SOURCE and details["created"] is True


def test_partition_and_retry_changes_record_their_own_events(use_catalog: str) -> None:
    from datalake.services import partitions, rebuild

    spec = [{"column": "day", "transform": "identity"}]
    schema = {"fields": [{"name": "id", "type": "long"}, {"name": "day", "type": "string"}]}
    with session_scope() as session:
        tid = tables.create_table(session, name="p", schema=schema, partitioning=spec).id
    with session_scope() as session:
        part = partitions.register_partition(
            session, table_id=tid, values={"day": "d1"}, actor="pat", correlation_id="c-7"
        )
        pid = part.id
    with session_scope() as session:
        partitions.recompute_stats(session, pid, actor="pat", correlation_id="c-8")
    with session_scope() as session:
        jid = jobs.create_job(session, table_id=tid, sources=[SOURCE]).id
    with session_scope() as session:
        jobs.abort_job(session, jid, error="boom", store=FakeDeleter())
    with session_scope() as session:
        new_id = rebuild.retry_job(session, jid, actor="rita", correlation_id="c-9").id
    events = {a: (who, cid, d) for a, who, cid, d in _trail()}
    assert events["partition.create"][:2] == ("pat", "c-7")
    assert events["partition.create"][2]["path"] == "day=d1"
    assert events["partition.stats"][:2] == ("pat", "c-8")
    assert events["job.retry"] == ("rita", "c-9", {"retry_of": jid, "table_id": tid})
    assert new_id != jid
