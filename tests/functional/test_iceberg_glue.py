"""The AWS Glue Data Catalog as the Iceberg catalog (``DATALAKE_ICEBERG_CATALOG=glue``),
on moto's Glue and S3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from datalake.catalog.db import session_scope
from datalake.config import get_settings
from datalake.services import iceberg, iceberg_refs, jobs, tables
from tests.functional.test_iceberg import HEADER, csv_rows, make_table, plan_and_run, start_job


def store() -> Any:
    from datalake.aws.s3 import S3ObjectStore

    return S3ObjectStore()


@pytest.fixture
def glue(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("DATALAKE_ICEBERG_CATALOG", "glue")
    get_settings.cache_clear()
    iceberg.reset()
    yield boto3.client("glue", region_name="us-east-1")
    iceberg.reset()
    get_settings.cache_clear()


def test_jobs_and_compaction_are_published_to_glue(glue: Any, s3: Any) -> None:
    from datalake.services.compaction import compact_table

    table_id = make_table()
    job_ids = []
    for k in range(2):
        job_id = start_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/{k}.csv")
        plan_and_run(job_id)
        jobs.publish_job(job_id, store=store())
        jobs.publish_job(job_id, store=store())  # a re-run appends nothing
        job_ids.append(job_id)
    compact_table(table_id, store=store())

    got = glue.get_table(DatabaseName="default", Name="t")["Table"]
    assert got["Parameters"]["table_type"].upper() == "ICEBERG"
    location = got["Parameters"]["metadata_location"]
    tbl = iceberg.get_catalog().load_table(("default", "t"))
    assert tbl.metadata_location == location
    snaps = tbl.snapshots()
    assert [s.summary.additional_properties.get(iceberg.SUMMARY_JOB) for s in snaps] == [
        *job_ids, None
    ]
    assert snaps[-1].summary.operation.value == "replace"
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
        assert {f"s3://{f.bucket}/{f.key}" for f in files} == {
            t.file.file_path for t in tbl.scan().plan_files()
        }
        table = tables.get_table(session, table_id)
        assert iceberg_refs.reference(session, table) == {
            "identifier": "default.t", "metadata_location": location
        }
    assert int(tbl.current_snapshot().summary["total-records"]) == 200


def test_the_template_grants_every_glue_call_publishing_and_the_api_make(
    glue: Any, s3: Any
) -> None:
    """The Glue operations a job's publish, a compaction and the API's table read really
    call (pyiceberg's GlueCatalog included) are the template's grants, no fewer."""
    from datalake.aws.clients import client
    from datalake.services.compaction import compact_table
    from tests.infra.test_template_policies import glue_policy_actions

    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(f"glue:{model.name}")

    events = client("glue").meta.events
    events.register("before-call.glue", record)
    try:
        table_id = make_table()
        for k in range(2):
            job_id = start_job(s3, table_id, HEADER + csv_rows(k * 100, 100), f"in/{k}.csv")
            plan_and_run(job_id)
            jobs.publish_job(job_id, store=store())
        compact_table(table_id, store=store())
        published = set(calls)
        calls.clear()
        with session_scope() as session:
            assert iceberg_refs.reference(session, tables.get_table(session, table_id))
        api = set(calls)
    finally:
        events.unregister("before-call.glue", record)
    writer, reader = glue_policy_actions()
    assert published and published <= writer, published - writer
    assert api and api <= reader, api - reader
