"""What Plan settles and refuses, end to end through the handlers (moto S3, both catalogs).

Each job runs the way the state machine runs it: the Plan handler, the batch worker's
handler on each batch's message, then Commit, or Abort with the error a failing state
hands its Catch (issue 27, items 3, 5 and 12).
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from datalake.catalog.db import session_scope
from datalake.catalog.models import AuditEvent, IngestionBatch
from datalake.errors import CommitConflict, CorruptInput, DatalakeError, InvalidInput
from datalake.services import jobs, schemas, tables
from tests.fakes import LAKE, LANDING, FakeCallbacks, FakeDeleter, FakeOrchestrator, LambdaContext

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"


def handler(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"settling_{name}", ROOT / "functions" / name / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def catch(error: str, message: str) -> dict[str, str]:
    """A Lambda failure as a state's Catch hands it to Abort."""
    return {"Error": error, "Cause": json.dumps({"errorMessage": message, "errorType": error})}


def start(table_id: str, keys: list[str], **job: Any) -> str:
    with session_scope() as session:
        created = jobs.create_job(
            session, table_id=table_id, sources=[f"s3://{LANDING}/{k}" for k in keys], **job
        )
        jobs.start_job(session, created.id, orchestrator=FakeOrchestrator())
        return created.id


def plan(s3: Any, job_id: str) -> list[str]:
    """Run Plan; the batch ids of the list it wrote for the Map."""
    out = handler("plan").lambda_handler({"job_id": job_id}, LambdaContext())
    body = s3.get_object(Bucket=out["items_bucket"], Key=out["items_key"])["Body"].read()
    return [item["batch_id"] for item in json.loads(body)]


def abort(job_id: str, error: dict[str, str]) -> dict[str, Any]:
    event = {"job_id": job_id, "error": error}
    return dict(handler("abort").lambda_handler(event, LambdaContext()))


def finish(job_id: str, batch_ids: list[str]) -> str:
    """Run every batch, then Commit, or Abort with the first batch failure."""
    worker = handler("ingest_batch")
    worker.callbacks = FakeCallbacks()  # type: ignore[attr-defined]
    sample = (ROOT / "events" / "ingest_batch_sqs.json").read_text()
    for batch_id in batch_ids:
        message = sample.replace("REPLACE_JOB_ID", job_id).replace("REPLACE_BATCH_ID", batch_id)
        worker.lambda_handler(json.loads(message.replace("REPLACE_TASK_TOKEN", batch_id)),
                              LambdaContext())
    if worker.callbacks.failed:  # type: ignore[attr-defined]
        _, error, cause = worker.callbacks.failed[0]  # type: ignore[attr-defined]
        return str(abort(job_id, {"Error": error, "Cause": cause})["status"])
    try:
        return str(handler("commit").lambda_handler({"job_id": job_id}, LambdaContext())["status"])
    except DatalakeError as e:
        return str(abort(job_id, catch(type(e).__name__, e.message))["status"])


def run(s3: Any, table_id: str, keys: list[str], **job: Any) -> str:
    """A whole job; a Plan failure goes to Abort as the state machine's Catch sends it."""
    job_id = start(table_id, keys, **job)
    try:
        batch_ids = plan(s3, job_id)
    except DatalakeError as e:
        abort(job_id, catch(type(e).__name__, e.message))
        return job_id
    finish(job_id, batch_ids)
    return job_id


def put(s3: Any, key: str, body: bytes | str) -> None:
    s3.put_object(Bucket=LANDING, Key=key, Body=body.encode() if isinstance(body, str) else body)


def new_table(name: str = "t", partitioning: list[dict[str, str]] | None = None, **kw: Any) -> str:
    with session_scope() as session:
        return tables.create_table(session, name=name, partitioning=partitioning, **kw).id


def job_row(job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        return {
            "status": job.status,
            "error": job.error or "",
            "read": job.records_read,
            "written": job.records_written,
            "rejected": job.records_rejected,
            "schema_version": job.schema_version,
        }


def versions(table_id: str) -> list[tuple[int, str | None, dict[str, str]]]:
    """(version, job, {column: type}) of each recorded version, oldest first."""
    with session_scope() as session:
        return [
            (v.version, v.job_id, {f["name"]: f["type"] for f in v.schema["fields"]})
            for v in schemas.history(session, table_id)
        ]


def current_version(table_id: str) -> int | None:
    with session_scope() as session:
        return tables.get_table(session, table_id).current_schema_version


def partitions(table_id: str) -> set[str]:
    with session_scope() as session:
        files, _ = tables.committed_files(session, table_id)
        return {f.partition_path for f in files}


FLIGHTS = "id,time_hour,carrier\n1,2013-01-01 05:00:00,UA\n2,2013-01-02 06:00:00,AA\n"


# ------------------------------------------------------------------ item 3: settling


def test_a_failed_job_records_no_schema_version_and_a_later_job_settles_its_own(
    s3: Any,
) -> None:
    table_id = new_table()
    put(s3, "in/a.csv", "id,value\n1,n/a\n2,n/a\n")
    first = start(table_id, ["in/a.csv"], max_retries=0)
    batch_ids = plan(s3, first)
    assert versions(table_id) == [(1, first, {"id": "long", "value": "string"})]
    # The object changes under the planned job: its batch fails and the job with it.
    put(s3, "in/a.csv", "id,value\n1,n/a\n2,n/a\n3,n/a\n")
    assert finish(first, batch_ids) == "FAILED"
    assert "SourceChanged" in job_row(first)["error"]

    assert versions(table_id) == [], "a failed job leaves no schema version"
    assert current_version(table_id) is None
    assert job_row(first)["schema_version"] is None
    with session_scope() as session:
        retired = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "schema.retire")
        ).all()
        assert [(e.details["version"], e.details["job_id"]) for e in retired] == [(1, first)]

    put(s3, "in/b.csv", "id,value\n1,5\n2,7\n")
    second = run(s3, table_id, ["in/b.csv"])
    assert job_row(second)["status"] == "SUCCEEDED"
    assert versions(table_id) == [(1, second, {"id": "long", "value": "long"})]


def test_a_version_a_running_job_was_planned_on_outlives_the_job_that_settled_it(
    s3: Any,
) -> None:
    table_id = new_table()
    put(s3, "in/a.csv", "id,value\n1,5\n")
    put(s3, "in/b.csv", "id,value\n2,6\n")
    first = start(table_id, ["in/a.csv"])
    plan(s3, first)
    second = start(table_id, ["in/b.csv"])
    second_batches = plan(s3, second)  # planned on the first job's version 1
    assert job_row(second)["schema_version"] == 1
    assert abort(first, catch("States.Timeout", "the batch timed out"))["status"] == "FAILED"
    assert [v for v, _, _ in versions(table_id)] == [1], "the second job still reads it"
    assert finish(second, second_batches) == "SUCCEEDED"
    assert [v for v, _, _ in versions(table_id)] == [1] and current_version(table_id) == 1
    assert job_row(second)["written"] == 1


def test_a_failed_jobs_clean_up_waits_for_a_plan_on_its_version_and_keeps_it(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from datalake.services import planning

    table_id = new_table()
    put(s3, "in/a.csv", "id,value\n1,5\n")
    first = start(table_id, ["in/a.csv"])
    plan(s3, first)
    second = start(table_id, ["in/a.csv"])
    aborted: dict[str, Any] = {}
    real_check = planning._check_partitioning

    def abort_meanwhile(*args: Any) -> None:
        # The second Plan holds version 1 (its job row does not name it yet): the first
        # job's Abort runs now, in another connection, and must not retire it under us.
        worker = threading.Thread(
            target=lambda: aborted.update(abort(first, catch("States.Timeout", "late")))
        )
        worker.start()
        time.sleep(1.0)
        aborted["waited"] = worker.is_alive()
        aborted["thread"] = worker
        real_check(*args)

    monkeypatch.setattr(planning, "_check_partitioning", abort_meanwhile)
    second_batches = plan(s3, second)
    aborted["thread"].join(timeout=60)
    assert aborted["waited"] and aborted["status"] == "FAILED"
    assert [v for v, _, _ in versions(table_id)] == [1] and job_row(second)["schema_version"] == 1
    assert finish(second, second_batches) == "SUCCEEDED"


def test_a_cancelled_jobs_version_is_retired_by_the_next_plan(s3: Any) -> None:
    table_id = new_table()
    put(s3, "in/a.csv", "id,value\n1,n/a\n")
    first = start(table_id, ["in/a.csv"])
    plan(s3, first)
    with session_scope() as session:  # a cancel stops the execution: no Abort state runs
        jobs.cancel_job(session, first, orchestrator=FakeOrchestrator(), store=FakeDeleter())
    assert [v for v, _, _ in versions(table_id)] == [1]

    put(s3, "in/b.csv", "id,value\n1,5\n")
    second = run(s3, table_id, ["in/b.csv"])
    assert job_row(second)["status"] == "SUCCEEDED"
    assert versions(table_id) == [(1, second, {"id": "long", "value": "long"})]


def test_a_plan_that_did_not_sample_plans_again_when_its_schema_is_retired_meanwhile(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datalake.services import planning

    table_id = new_table(schema_policy="freeze")  # no schema: the first job's files settle it
    put(s3, "in/a.csv", "id,value\n1,5\n")
    first = start(table_id, ["in/a.csv"])
    plan(s3, first)
    second = start(table_id, ["in/a.csv"])
    real_pack = planning.pack_splits

    def first_job_fails_meanwhile(*args: Any, **kwargs: Any) -> Any:
        # After the second Plan chose not to sample (the table had version 1, frozen).
        abort(first, catch("States.Timeout", "the batch timed out"))
        return real_pack(*args, **kwargs)

    monkeypatch.setattr(planning, "pack_splits", first_job_fails_meanwhile)
    with pytest.raises(CommitConflict, match="planning again"):
        plan(s3, second)
    assert versions(table_id) == [] and job_row(second)["schema_version"] is None
    monkeypatch.setattr(planning, "pack_splits", real_pack)
    assert finish(second, plan(s3, second)) == "SUCCEEDED"  # the state machine's retry
    assert versions(table_id) == [(1, second, {"id": "long", "value": "long"})]


@pytest.mark.parametrize(
    ("column", "body", "message"),
    [
        (
            "time_hour",
            "id,time_hour,carrier\n1,n/a,UA\n2,soon,AA\n",
            "day(time_hour) needs a date or timestamp column, not string",
        ),
        ("nosuch", FLIGHTS, "partition column 'nosuch' is not in the table schema"),
    ],
    ids=["day-of-a-string", "missing-column"],
)
def test_a_partition_spec_that_does_not_fit_fails_the_job_at_plan(
    s3: Any, column: str, body: str, message: str
) -> None:
    table_id = new_table(partitioning=[{"column": column, "transform": "day"}])
    put(s3, "in/bad.csv", body)
    job_id = start(table_id, ["in/bad.csv"])
    with pytest.raises(InvalidInput, match="partitioning does not fit") as raised:
        plan(s3, job_id)
    assert message in raised.value.message
    abort(job_id, catch("InvalidInput", raised.value.message))
    failed = job_row(job_id)
    assert failed["status"] == "FAILED" and failed["error"].startswith("InvalidInput: ")
    assert message in failed["error"]
    with session_scope() as session:
        assert session.scalars(
            select(IngestionBatch).where(IngestionBatch.job_id == job_id)
        ).all() == [], "refused before any batch"
    assert versions(table_id) == [] and current_version(table_id) is None

    if column == "nosuch":  # fix the spec; the data was fine
        with session_scope() as session:
            tables.update_table(
                session, table_id, {"partitioning": [{"column": "time_hour", "transform": "day"}]}
            )
    put(s3, "in/good.csv", FLIGHTS)
    later = run(s3, table_id, ["in/good.csv"])
    assert job_row(later)["status"] == "SUCCEEDED", job_row(later)["error"]
    assert versions(table_id)[0][2]["time_hour"] in ("timestamp", "timestamptz")
    assert partitions(table_id) == {"time_hour_day=2013-01-01", "time_hour_day=2013-01-02"}


def test_pandas_iso_timestamps_in_json_lines_infer_as_timestamps_and_partition_by_day(
    s3: Any,
) -> None:
    # pandas' to_json(orient="records", lines=True, date_format="iso") spelling, and
    # microseconds and an offset (read as UTC: 01:30+02:00 is the day before).
    lines = [
        {"id": 1, "time_hour": "2013-01-01T10:00:00.000Z", "carrier": "UA"},
        {"id": 2, "time_hour": "2013-01-02T01:30:00.250+02:00", "carrier": "AA"},
        {"id": 3, "time_hour": "2013-01-03T05:00:00.123456Z", "carrier": "DL"},
        {"id": 4, "time_hour": None, "carrier": "DL"},
    ]
    put(s3, "in/weather.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    table_id = new_table(partitioning=[{"column": "time_hour", "transform": "day"}])
    job_id = run(s3, table_id, ["in/weather.jsonl"])
    done = job_row(job_id)
    assert done["status"] == "SUCCEEDED", done["error"]
    assert (done["read"], done["written"], done["rejected"]) == (4, 4, 0)
    assert versions(table_id)[0][2]["time_hour"] == "timestamp"
    assert partitions(table_id) == {
        "time_hour_day=2013-01-01",
        "time_hour_day=2013-01-03",
        "time_hour_day=__HIVE_DEFAULT_PARTITION__",
    }


def test_a_schema_change_on_a_table_without_data_is_not_refused_for_old_data(
    s3: Any, api: Any
) -> None:
    from datalake.tokens import make_token

    admin = {"Authorization": "Bearer " + make_token("settler", ["admin"])}
    created = api.post(
        f"{API}/tables/",
        json={"name": "w", "schema": {"fields": [{"name": "id", "type": "long"},
                                                 {"name": "t", "type": "string"}]}},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    table_id = created.json()["id"]

    def propose(t_type: str) -> Any:
        fields = [{"name": "id", "type": "long"}, {"name": "t", "type": t_type}]
        body = {"table_id": table_id, "schema": {"fields": fields}}
        return api.post(f"{API}/schema/versions", json=body, headers=admin)

    # string -> timestamp breaks BACKWARD for data of version 1, and there is none.
    fixed = propose("timestamp")
    assert fixed.status_code == 201, fixed.text
    put(s3, "in/w.csv", "id,t\n1,2013-01-01 05:00:00\n")
    assert job_row(run(s3, table_id, ["in/w.csv"]))["status"] == "SUCCEEDED"
    # Now version 2 holds data: the same kind of change is refused, naming it.
    refused = propose("string")
    assert refused.status_code == 409, refused.text
    assert "data written with version 2 could not be read" in refused.text


# ------------------------------------------------------- item 5: the CSV sampler


def test_a_short_csv_row_is_quarantined_wherever_it_lies(s3: Any) -> None:
    header = ",".join(f"c{i}" for i in range(19))
    good = [",".join(str(n * 19 + i) for i in range(19)) for n in range(16_000)]
    short = "1,2,3,4,5,6,7"
    rows = [*good[:2], short, *good[2:-2], short, *good[-2:]]
    body = header + "\n" + "\n".join(rows) + "\n"
    assert len(body) > 2**20 + 4096, "the second short row lies past the 1 MiB sample"
    assert body.index(short) < 1024 and len(body) - body.rindex(short) < 1024
    put(s3, "in/wide.csv", body)
    table_id = new_table()
    job_id = run(s3, table_id, ["in/wide.csv"])

    done = job_row(job_id)
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["rejected"] == 2 and done["written"] == len(good)
    assert done["read"] == done["written"] + done["rejected"]
    with session_scope() as session:
        keys = [
            b.quarantine_key
            for b in session.scalars(select(IngestionBatch).where(IngestionBatch.job_id == job_id))
            if b.quarantine_key
        ]
    lines = [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=LAKE, Key=key)["Body"].read().splitlines()
    ]
    assert [(r["value"], r["error"]) for r in lines] == [
        (short, "expected 19 fields, got 7"),
        (short, "expected 19 fields, got 7"),
    ]


# -------------------------------------------------- item 12: binary in error messages


def printable(text: str) -> bool:
    return all(ch.isprintable() and ch != "\ufffd" for ch in text)


def test_a_parquet_file_ingested_as_csv_fails_with_a_printable_error(
    s3: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    sink = io.BytesIO()
    table = pa.table({"id": pa.array(range(5000), pa.int64()),
                      "name": [f"name-{i}" for i in range(5000)]})
    pq.write_table(table, sink)
    put(s3, "in/flights.parquet", sink.getvalue())
    table_id = new_table()
    job_id = start(table_id, ["in/flights.parquet"], format="csv")
    with pytest.raises(CorruptInput) as raised:
        plan(s3, job_id)
    message = raised.value.message
    assert printable(message), message
    assert "is not CSV text" in message and "looks like a Parquet file" in message
    abort(job_id, catch("CorruptInput", message))
    failed = job_row(job_id)
    assert failed["status"] == "FAILED" and printable(failed["error"])
    out, err = capfd.readouterr()
    assert all(printable(line) for line in (out + err).splitlines()), "the logs are text"
    assert versions(table_id) == []
