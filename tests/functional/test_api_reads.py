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
