"""API latency and cold-start import time (``make bench`` runs it after ``run.py``).

- Import time of the API handler (``functions/api/app.py``): median of fresh processes.
- Latency, served by uvicorn on Postgres with 10,000 jobs in the catalog, of
  ``GET /tables/{id}``, ``GET /ingestion/jobs?limit=50`` and ``POST /ingestion/jobs``:
  serial requests (what one Lambda container sees), p50/p99; then 8 concurrent clients on
  the two reads for ``--seconds``, requests/s and p99.
- The server's CPU per request (its process's user + system seconds over the requests it
  served, each route on its own), which other work on a shared machine disturbs far less
  than requests/s: what bounds one process's throughput.

Machines here are shared and noisy: medians and percentiles over many requests, never
one timing. Postgres: ``DATALAKE_BENCH_PG`` (default the server at 127.0.0.1:5432),
through ``--driver`` (default psycopg, as the API function is deployed).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "datalake"), str(ROOT / "functions" / "api")]

GOALS = {
    "read_p99_ms": 25.0,
    "write_p99_ms": 50.0,
    "rps": 500.0,
    "conc_p99_ms": 100.0,
    "import_ms": 400.0,
}


def import_times(n: int) -> list[float]:
    """Milliseconds to import the API handler, once per fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import app; print((time.perf_counter() - t) * 1000)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "datalake")}
    out = []
    for _ in range(n):
        r = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT / "functions" / "api",
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(float(r.stdout.strip().splitlines()[-1]))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(
    base: str, headers: dict[str, str], path: str, pid: int, clients: int, seconds: float
) -> float:
    """Milliseconds of the server's CPU per request of ``path`` under ``clients`` clients."""
    before = cpu_seconds(pid)
    done, _ = concurrent(base, headers, [path], clients, seconds)
    return (cpu_seconds(pid) - before) / done * 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_catalog(url: str, jobs: int) -> str:
    """Migrate ``url`` and fill it with one table and ``jobs`` finished jobs."""
    from sqlalchemy import insert

    from datalake.catalog.db import get_engine, session_scope
    from datalake.catalog.migrate import upgrade
    from datalake.catalog.models import IngestionJob, utcnow
    from datalake.domain.vocabulary import JobStatus
    from datalake.services.tables import create_table

    upgrade(url)
    with session_scope(get_engine(url)) as s:
        table = create_table(s, name="bench", schema={"fields": [{"name": "id", "type": "long"}]})
        table_id = table.id
    rows = [
        {
            "id": str(uuid.uuid4()),
            "table_id": table_id,
            "status": JobStatus.SUCCEEDED,
            "sources": [f"s3://datalake-landing/in/{i}.csv"],
            "options": {"batch_size": 10000},
            "max_retries": 2,
            "timeout_seconds": 900,
            "created_at": utcnow(),
            "updated_at": utcnow(),
        }
        for i in range(jobs)
    ]
    with get_engine(url).begin() as conn:
        for i in range(0, len(rows), 1000):
            conn.execute(insert(IngestionJob), rows[i : i + 1000])
    return table_id


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def serial(client: Any, method: str, path: str, n: int, body: Any = None) -> list[float]:
    """Milliseconds of ``n`` requests, one after the other, on one kept-alive connection."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.request(method, path, json=body)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code >= 300:
            sys.exit(f"{method} {path}: {r.status_code} {r.text[:200]}")
    return out


def concurrent(
    base: str, headers: dict[str, str], paths: list[str], clients: int, seconds: float
) -> tuple[int, list[float]]:
    """Requests done and their latencies, ``clients`` threads cycling over ``paths``."""
    import httpx

    stop = time.monotonic() + seconds
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def run(i: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            k = i
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = c.get(paths[k % len(paths)])
                lat[i].append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")
                k += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"{len(errors)} failed requests under concurrency, e.g. {errors[0]}")
    flat = [x for part in lat for x in part]
    return len(flat), flat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--imports", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument(
        "--driver", choices=["psycopg", "pg8000"], default="psycopg", help="Postgres driver"
    )
    ap.add_argument(
        "--cpu-rounds", type=int, default=3, help="rounds of the CPU-per-request measure"
    )
    args = ap.parse_args()

    imports = import_times(args.imports)
    print(
        f"API handler import: median {statistics.median(imports):.0f} ms over "
        f"{len(imports)} fresh processes (min {min(imports):.0f}, max {max(imports):.0f}); "
        f"goal <= {GOALS['import_ms']:.0f} ms"
    )

    import httpx
    import pg8000.native

    server = os.environ.get("DATALAKE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
    name = f"datalake_bench_api_{os.getpid()}"
    host_port = server.rsplit("@", 1)[-1]
    host, _, port = host_port.partition(":")
    admin = pg8000.native.Connection(user="postgres", host=host, port=int(port or 5432))
    admin.run(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    proc = None
    try:
        table_id = seed_catalog(url, args.jobs)
        port_no = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DATALAKE_DB_DRIVER": args.driver,
            "PYTHONPATH": os.pathsep.join(sys.path[:2]),
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
                str(port_no),
                "--log-level",
                "warning",
                "--no-access-log",
                "--workers",
                str(args.workers),
            ],
            env=env,
        )
        base = f"http://127.0.0.1:{port_no}"
        from datalake.tokens import make_token

        headers = {"Authorization": "Bearer " + make_token("bench", ["admin"])}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            for _ in range(100):
                try:
                    if c.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            reads = [f"/api/v1/tables/{table_id}", "/api/v1/ingestion/jobs?limit=50"]
            labels = ["GET /tables/{id}", "GET /ingestion/jobs?limit=50"]
            serial(c, "GET", reads[0], 50)  # warm up the pool and the code paths
            rows = []
            for label, method, path, body, goal in [
                ("GET /tables/{id}", "GET", reads[0], None, GOALS["read_p99_ms"]),
                ("GET /ingestion/jobs?limit=50", "GET", reads[1], None, GOALS["read_p99_ms"]),
                (
                    "POST /ingestion/jobs",
                    "POST",
                    "/api/v1/ingestion/jobs",
                    {"table_id": table_id, "sources": ["s3://datalake-landing/bench.csv"]},
                    GOALS["write_p99_ms"],
                ),
            ]:
                ms = serial(c, method, path, args.requests, body)
                rows.append((label, statistics.median(ms), _pct(ms, 0.99), goal))
        print(
            f"\nserial, {args.requests} requests each, uvicorn on Postgres, "
            f"{args.jobs:,} jobs in the catalog:"
        )
        print(f"  {'route':32s} {'p50 ms':>8s} {'p99 ms':>8s} {'goal p99':>9s}")
        for label, p50, p99, goal in rows:
            mark = "ok" if p99 <= goal else "MISSED"
            print(f"  {label:32s} {p50:8.1f} {p99:8.1f} {goal:9.0f}  {mark}")
        done, lat = concurrent(base, headers, reads, args.clients, args.seconds)
        rps = done / args.seconds
        p99 = _pct(lat, 0.99)
        print(
            f"\n{args.clients} concurrent clients on the two reads for {args.seconds:.0f} s: "
            f"{rps:.0f} requests/s (goal >= {GOALS['rps']:.0f}), p50 "
            f"{statistics.median(lat):.1f} ms, p99 {p99:.1f} ms "
            f"(goal <= {GOALS['conc_p99_ms']:.0f})"
        )
        if args.workers == 1:  # one process: its CPU is the server's
            print(
                f"\nserver CPU per request ({args.driver}), {args.clients} clients, "
                f"median of {args.cpu_rounds} rounds of {args.seconds / 3:.0f} s:"
            )
            for label, path in zip(labels, reads, strict=True):
                ms = [
                    cpu_per_request(base, headers, path, proc.pid, args.clients, args.seconds / 3)
                    for _ in range(args.cpu_rounds)
                ]
                print(
                    f"  {label:32s} {statistics.median(ms):5.2f} ms "
                    f"({', '.join(f'{x:.2f}' for x in ms)})"
                )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        from datalake.catalog.db import get_engine

        get_engine(url).dispose()
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
