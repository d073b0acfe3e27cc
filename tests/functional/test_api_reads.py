"""Reads that scale: GETs take no write lock on SQLite, and go to a read replica
(``DATABASE_READ_URL``) when one is configured, while writes stay on the primary."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from datalake.catalog import db
from datalake.catalog.migrate import upgrade
from datalake.tokens import make_token
from datalake_api.main import create_app

ADMIN = {"Authorization": "Bearer " + make_token("reads", ["admin"])}


def test_sqlite_reads_run_beside_a_writer_holding_the_lock(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    db.get_engine.cache_clear()
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            assert (
                client.post("/api/v1/tables/", json={"name": "t"}, headers=ADMIN).status_code == 201
            )
            writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
            writer.execute("BEGIN IMMEDIATE")  # another process's long write transaction
            writer.execute("UPDATE datalake_tables SET description = 'busy'")
            try:
                start = time.monotonic()
                r = client.get("/api/v1/tables/", headers=ADMIN)
                took = time.monotonic() - start
                assert r.status_code == 200 and r.json()["total"] == 1
                # With BEGIN IMMEDIATE the read would queue behind the writer (busy timeout).
                assert took < 2.0, f"a read waited {took:.1f} s for the write lock"
            finally:
                writer.execute("ROLLBACK")
                writer.close()
    finally:
        db.get_engine.cache_clear()


def test_writes_still_take_the_lock_at_begin(sqlite_url: str) -> None:
    """Two writers never interleave their read-then-write sequences (no deadlock)."""
    engine = db.get_engine(sqlite_url)
    seen: list[str] = []

    def write(name: str) -> None:
        with db.session_scope(engine) as s:
            s.connection().exec_driver_sql("SELECT count(*) FROM datalake_tables")
            seen.append(f"{name}-in")
            time.sleep(0.3)
            seen.append(f"{name}-out")

    threads = [threading.Thread(target=write, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen[0][0] == seen[1][0], f"two write transactions overlapped: {seen}"


def test_gets_go_to_the_read_replica_and_writes_to_the_primary(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = f"sqlite:///{tmp_path / 'replica.db'}"
    upgrade(replica)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DATABASE_READ_URL", replica)
    db.get_engine.cache_clear()
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            created = client.post("/api/v1/tables/", json={"name": "t"}, headers=ADMIN)
            assert created.status_code == 201
            # The stand-in replica has not caught up: the GET answers from it.
            assert client.get("/api/v1/tables/", headers=ADMIN).json()["total"] == 0
            monkeypatch.delenv("DATABASE_READ_URL")
            assert client.get("/api/v1/tables/", headers=ADMIN).json()["total"] == 1
    finally:
        db.get_engine.cache_clear()


def test_the_jobs_page_answers_every_filter_combination_and_window(
    api: TestClient, admin_token: str
) -> None:
    """Its statements are built once per set of filters: each set, window and value must
    still get exactly its own jobs, and each item the same body as the job's own GET."""
    from datetime import UTC, datetime, timedelta
    from itertools import product

    from sqlalchemy import update

    from datalake.catalog.models import IngestionJob

    auth = {"Authorization": f"Bearer {admin_token}"}
    tables = [
        api.post("/api/v1/tables/", json={"name": f"paged{i}"}, headers=auth).json()["id"]
        for i in range(2)
    ]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    made = []
    for i in range(8):
        job = api.post(
            "/api/v1/ingestion/jobs",
            json={"table_id": tables[i % 2], "sources": [f"s3://datalake-landing/p/{i}.csv"]},
            headers=auth,
        ).json()
        status = "SUCCEEDED" if i % 3 == 0 else "PENDING"
        with db.session_scope() as s:
            s.execute(
                update(IngestionJob)
                .where(IngestionJob.id == job["id"])
                .values(status=status, created_at=base + timedelta(hours=i))
            )
        made.append((job["id"], tables[i % 2], status, base + timedelta(hours=i)))
    newest_first = sorted(made, key=lambda j: j[3], reverse=True)
    after, before = base + timedelta(hours=2), base + timedelta(hours=6)
    for status, table, lo, hi in product(
        (None, "SUCCEEDED"), (None, tables[0]), (None, after), (None, before)
    ):
        expected = [
            j[0]
            for j in newest_first
            if (status is None or j[2] == status)
            and (table is None or j[1] == table)
            and (lo is None or j[3] >= lo)
            and (hi is None or j[3] < hi)
        ]
        params = {
            k: v
            for k, v in {
                "status": status,
                "table_id": table,
                "created_after": lo.isoformat() if lo else None,
                "created_before": hi.isoformat() if hi else None,
            }.items()
            if v is not None
        }
        for limit, offset in ((50, 0), (2, 0), (2, 1), (3, 5)):
            r = api.get(
                "/api/v1/ingestion/jobs",
                params={**params, "limit": limit, "offset": offset},
                headers=auth,
            )
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["total"] == len(expected), params
            assert [j["id"] for j in page["items"]] == expected[offset : offset + limit], params
    listed = api.get("/api/v1/ingestion/jobs", params={"limit": 50}, headers=auth).json()
    for item in listed["items"]:
        one = api.get(f"/api/v1/ingestion/jobs/{item['id']}", headers=auth).json()
        assert item == {**one, "iceberg_published": None}
