"""The catalog's server stopped mid-run: the API answers 503 with Retry-After within a
second (never a hung request, never a 500), and 200 again once the server is back,
without a restart. Runs on a Postgres cluster of its own, so stopping it stops no one."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from datalake.catalog import db
from datalake.catalog.breaker import breaker
from datalake.tokens import make_token
from datalake_api.main import create_app
from tests.pgcluster import Cluster, bindir

ADMIN = {"Authorization": "Bearer " + make_token("outage", ["admin"])}

pytestmark = pytest.mark.skipif(bindir() is None, reason="no Postgres server installed")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster(Path(tempfile.mkdtemp(prefix="dl-outage-")))
    c.start()
    try:
        yield c
    finally:
        c.remove()


def _timed_get(client: TestClient, path: str) -> tuple[int, float, dict[str, str]]:
    start = time.monotonic()
    r = client.get(path, headers=ADMIN)
    return r.status_code, time.monotonic() - start, dict(r.headers)


def test_outage_is_a_fast_503_and_recovery_needs_no_restart(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pg8000.native

    admin = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=cluster.port)
    admin.run("CREATE DATABASE outage")
    admin.close()
    url = f"{cluster.url}/outage"
    from datalake.catalog.migrate import upgrade

    upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    db.get_engine.cache_clear()
    breaker.record_success()
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            created = client.post("/api/v1/tables/", json={"name": "before"}, headers=ADMIN)
            assert created.status_code == 201
            assert _timed_get(client, "/api/v1/tables/")[0] == 200

            cluster.stop()
            answers = [_timed_get(client, "/api/v1/tables/") for _ in range(5)]
            write = client.post("/api/v1/tables/", json={"name": "during"}, headers=ADMIN)
            for status, seconds, headers in answers:
                assert status == 503, answers
                assert seconds < 1.0, answers
                assert headers.get("retry-after") == "1"
            assert write.status_code == 503 and "unavailable" in write.text

            cluster.start()
            deadline = time.monotonic() + 15
            status = 0
            while time.monotonic() < deadline:
                status = _timed_get(client, "/api/v1/tables/")[0]
                if status == 200:
                    break
                time.sleep(0.3)
            assert status == 200, "the API did not recover without a restart"
            names = [
                t["name"] for t in client.get("/api/v1/tables/", headers=ADMIN).json()["items"]
            ]
            assert names == ["before"], "the write during the outage must not have landed"
    finally:
        db.get_engine(url).dispose()
        db.get_engine.cache_clear()
        breaker.record_success()
