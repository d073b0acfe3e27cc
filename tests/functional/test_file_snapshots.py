"""`GET /tables/{id}/files` pages through one snapshot while compaction swaps files.

Moto S3, a real catalog (SQLite and Postgres), compaction run in process as in
test_compaction.py, the API through FastAPI's test client.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from datalake.catalog import snapshots
from datalake.catalog.db import session_scope
from datalake.catalog.models import DataFile, DataLakeTable, utcnow
from datalake.config import get_settings
from datalake.services import compaction
from datalake.services.compaction import compact_table
from datalake.tokens import make_token
from datalake_api.main import create_app
from tests.functional.test_compaction import (
    add_file,
    committed,
    ingest,
    make_table,
    parquet_keys,
    store,
)

READER = {"Authorization": "Bearer " + make_token("tester", ["reader"])}
LIMIT = 7


@pytest.fixture
def api(s3: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def files_url(table_id: str, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"limit": LIMIT, **params}.items())
    return f"/api/v1/tables/{table_id}/files?{query}"


def get_page(api: TestClient, table_id: str, **params: Any) -> dict[str, Any]:
    r = api.get(files_url(table_id, **params), headers=READER)
    assert r.status_code == 200, r.text
    return dict(r.json())


def rest_by_cursor(api: TestClient, table_id: str, first: dict[str, Any]) -> list[dict[str, Any]]:
    """The pages after ``first``, following its ``next`` cursors."""
    pages = []
    cursor = first["next"]
    while cursor:
        page = get_page(api, table_id, cursor=cursor)
        pages.append(page)
        cursor = page["next"]
    return pages


def rest_by_offset(api: TestClient, table_id: str, first: dict[str, Any]) -> list[dict[str, Any]]:
    """The pages after ``first`` by ``offset`` within its snapshot, until one is empty."""
    pages = []
    offset = LIMIT
    while True:
        page = get_page(api, table_id, snapshot=first.get("snapshot", ""), offset=offset)
        if not page["items"]:
            return pages
        pages.append(page)
        offset += LIMIT


def paths(pages: list[dict[str, Any]]) -> list[str]:
    return [item["path"] for page in pages for item in page["items"]]


def file_set(files: list[DataFile]) -> set[str]:
    return {f"s3://{f.bucket}/{f.key}" for f in files}


def read_objects(s3: Any, items: list[dict[str, Any]]) -> int:
    """Fetch every listed object, check its checksum and size; return the rows listed."""
    for item in items:
        bucket, key = item["path"].removeprefix("s3://").split("/", 1)
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(raw).hexdigest() == item["checksum"], item["path"]
        assert len(raw) == item["size_bytes"]
    return sum(int(item["record_count"]) for item in items)


def file_seq(table_id: str) -> int:
    with session_scope() as session:
        return int(
            session.scalar(select(DataLakeTable.file_seq).where(DataLakeTable.id == table_id))
            or 0
        )


@pytest.mark.parametrize("paging", ["cursor", "offset"])
def test_pages_after_a_compaction_list_the_snapshot_of_the_first_page(
    s3: Any, api: TestClient, paging: str
) -> None:
    table_id = ingest(s3, split_size_mb=0.01, batch_size=200)
    before = committed(table_id)
    assert len(before) > 3 * LIMIT, "the fixture needs several pages of small files"

    first = get_page(api, table_id)
    summary = compact_table(table_id, store=store())
    assert summary.files_replaced == len(before) and summary.conflicts == 0
    rest = (rest_by_cursor if paging == "cursor" else rest_by_offset)(api, table_id, first)

    pages = [first, *rest]
    listed = paths(pages)
    # Exactly the files of the first page's state: none skipped, none twice.
    assert len(listed) == len(set(listed)) == len(before)
    assert set(listed) == file_set(before)
    assert {p["total"] for p in pages} == {len(before)}
    assert {p["snapshot"] for p in pages} == {first["snapshot"]}
    assert pages[-1]["next"] is None
    # Every object is still there (retention), and the rows add up exactly.
    assert read_objects(s3, [i for p in pages for i in p["items"]]) == 3000


def test_a_fresh_listing_after_compaction_shows_the_new_files_only(
    s3: Any, api: TestClient
) -> None:
    table_id = ingest(s3, split_size_mb=0.01, batch_size=200)
    before = file_set(committed(table_id))
    old = get_page(api, table_id)

    compact_table(table_id, store=store())

    after = committed(table_id)
    first = get_page(api, table_id)
    pages = [first, *rest_by_cursor(api, table_id, first)]
    listed = paths(pages)
    assert first["snapshot"] != old["snapshot"]
    assert set(listed) == file_set(after) and len(listed) == len(after) == first["total"] == 5
    assert not set(listed) & before
    assert all("/part-compact-" in p for p in listed)
    assert read_objects(s3, [i for p in pages for i in p["items"]]) == 3000


def test_files_committed_after_the_snapshot_are_not_in_it(s3: Any, api: TestClient) -> None:
    table_id, part_id = make_table()
    rows = [add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10)) for n in range(10)]
    first = get_page(api, table_id)
    late = add_file(s3, table_id, part_id, range(500, 510))  # a job commits meanwhile

    listed = paths([first, *rest_by_cursor(api, table_id, first)])

    assert set(listed) == file_set(rows)
    assert f"s3://{late.bucket}/{late.key}" in paths([get_page(api, table_id, limit=100)])


@pytest.mark.parametrize("round_", range(3))
def test_paging_while_a_thread_compacts_never_skips_or_doubles_a_file(
    s3: Any, api: TestClient, monkeypatch: pytest.MonkeyPatch, round_: int
) -> None:
    table_id, part_id = make_table(name=f"race{round_}")
    rows = [add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10)) for n in range(42)]
    # Many commits: chunks of about three files, each its own swap.
    monkeypatch.setattr(compaction, "MAX_MERGE_INPUT_BYTES", max(r.size_bytes for r in rows) * 3)
    seq0 = file_seq(table_id)
    errors: list[BaseException] = []
    results: list[Any] = []

    def compact() -> None:
        try:
            results.append(compact_table(table_id, store=store()))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    first = get_page(api, table_id)
    worker = threading.Thread(target=compact)
    worker.start()
    deadline = time.monotonic() + 30
    while file_seq(table_id) == seq0 and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)  # page 2 comes after the first swap; the rest race the others
    assert file_seq(table_id) > seq0, "compaction committed nothing before page 2"
    pages = [first]
    seqs = []
    cursor = first["next"]
    while cursor:
        pages.append(get_page(api, table_id, cursor=cursor))
        seqs.append(file_seq(table_id))
        cursor = pages[-1]["next"]
    worker.join(timeout=120)

    assert not errors and results and results[0].files_replaced == 42
    assert results[0].files_written >= 10, "the run needs many commits to race with"
    listed = paths(pages)
    assert len(listed) == len(set(listed)) == 42
    assert set(listed) == file_set(rows)
    assert {p["total"] for p in pages} == {42}
    assert read_objects(s3, [i for p in pages for i in p["items"]]) == 420
    # A fresh listing now has only the merged files, the same rows.
    fresh = get_page(api, table_id, limit=1000)
    assert fresh["total"] == len(committed(table_id)) == results[0].files_written
    assert read_objects(s3, fresh["items"]) == 420


def test_a_snapshot_older_than_the_retention_is_refused(
    s3: Any, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    table_id, part_id = make_table()
    for n in range(10):
        add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10))
    first = get_page(api, table_id)
    retention = get_settings().replaced_file_retention_seconds
    assert first["expires_at"] is not None
    later = utcnow() + timedelta(seconds=retention + 1)
    monkeypatch.setattr(snapshots, "utcnow", lambda: later)

    for params in ({"cursor": first["next"]}, {"snapshot": first["snapshot"], "offset": 7}):
        r = api.get(files_url(table_id, **params), headers=READER)
        assert r.status_code == 409, r.text
        assert "snapshot expired, list again" in r.json()["detail"]
    # Listing again works.
    assert get_page(api, table_id, limit=100)["total"] == 10


def test_a_snapshot_whose_files_were_deleted_is_refused(
    s3: Any, api: TestClient, no_retention: None
) -> None:
    table_id, part_id = make_table()
    for n in range(10):
        add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10))
    first = get_page(api, table_id)
    assert first["expires_at"] is None  # no retention: served until a file of it is deleted
    assert get_page(api, table_id, cursor=first["next"])["total"] == 10

    compact_table(table_id, store=store())  # retention 0: deletes the inputs at once

    r = api.get(files_url(table_id, cursor=first["next"]), headers=READER)
    assert r.status_code == 409 and "snapshot expired, list again" in r.json()["detail"]
    fresh = get_page(api, table_id)
    assert fresh["total"] == 1 and read_objects(s3, fresh["items"]) == 100


def test_bad_tokens_are_refused(s3: Any, api: TestClient) -> None:
    table_id, part_id = make_table()
    other_id, other_part = make_table(name="other")
    for n in range(9):
        add_file(s3, table_id, part_id, range(n * 10, n * 10 + 10))
        add_file(s3, other_id, other_part, range(n * 10, n * 10 + 10))
    mine = get_page(api, table_id)
    theirs = get_page(api, other_id)
    version, seq, ms, sig = mine["snapshot"].split(".")
    forged = f"{version}.{seq}.{int(ms) + 10**9}.{sig}"  # a longer life, the same signature
    for params in (
        {"snapshot": "nope"},
        {"snapshot": forged},
        {"snapshot": theirs["snapshot"]},
        {"cursor": theirs["next"]},
        {"cursor": "!!!"},
        {"snapshot": theirs["snapshot"], "cursor": mine["next"]},
    ):
        r = api.get(files_url(table_id, **params), headers=READER)
        assert r.status_code == 422, (params, r.text)
        assert "list again" in r.json()["detail"] or "snapshot" in r.json()["detail"]
    assert api.get(files_url("missing"), headers=READER).status_code == 404


def test_replaced_objects_outlive_a_compaction_with_default_settings(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATALAKE_REPLACED_FILE_RETENTION_SECONDS", raising=False)
    get_settings.cache_clear()
    assert get_settings().replaced_file_retention_seconds == 5 * 24 * 3600
    table_id = ingest(s3, split_size_mb=0.01, batch_size=200)
    before = committed(table_id)

    summary = compact_table(table_id, store=store())

    assert summary.files_replaced == len(before) > 0
    assert {f.key for f in before} <= parquet_keys(s3)
    for f in before:
        raw = s3.get_object(Bucket=f.bucket, Key=f.key)["Body"].read()
        assert hashlib.sha256(raw).hexdigest() == f.checksum
    with session_scope() as session:
        replaced = session.scalars(
            select(DataFile).where(DataFile.table_id == table_id, DataFile.status == "REPLACED")
        ).all()
        assert len(replaced) == len(before)
        # One change: the inputs left the file set at the number and time the outputs entered.
        outputs = session.scalars(
            select(DataFile).where(DataFile.table_id == table_id, DataFile.status == "COMMITTED")
        ).all()
    for out in outputs:
        inputs = [f for f in replaced if f.partition_path == out.partition_path]
        assert {(f.replaced_seq, f.replaced_at) for f in inputs} == {
            (out.committed_seq, out.committed_at)
        }
    # A second run within the retention deletes nothing either.
    assert compact_table(table_id, store=store()).swept == 0
    assert {f.key for f in before} <= parquet_keys(s3)
