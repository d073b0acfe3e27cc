"""The API served for real (uvicorn, a socket, concurrent clients), on both catalogs:
a 2xx is a committed write, so a read right after it always finds it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from datalake.tokens import make_token

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": "Bearer " + make_token("served", ["admin"])}


@pytest.fixture
def served(use_catalog: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": use_catalog,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "layers" / "datalake"), str(ROOT / "functions" / "api")]
        ),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "datalake_api.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("uvicorn did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_read_right_after_a_2xx_write_finds_it_under_concurrency(served: str) -> None:
    with httpx.Client(base_url=served, headers=ADMIN, timeout=30) as c:
        table = c.post("/api/v1/tables/", json={"name": "served"})
        assert table.status_code == 201, table.text
        table_id = table.json()["id"]
    misses: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=served, headers=ADMIN, timeout=30) as c:
            for i in range(25):
                r = c.post(
                    "/api/v1/ingestion/jobs",
                    json={"table_id": table_id, "sources": [f"s3://datalake-landing/{n}/{i}.csv"]},
                )
                if r.status_code != 201:
                    misses.append(f"create: {r.status_code} {r.text[:100]}")
                    continue
                got = c.get(f"/api/v1/ingestion/jobs/{r.json()['id']}")
                if got.status_code != 200:
                    misses.append(f"read after 201: {got.status_code}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not misses, f"{len(misses)} of 200: {misses[:5]}"
    with httpx.Client(base_url=served, headers=ADMIN, timeout=30) as c:
        assert c.get("/api/v1/ingestion/jobs", params={"limit": 1}).json()["total"] == 200
