"""API latency and cold-start import time (``make bench`` runs it after ``run.py``).

- Import time of the API handler (``functions/api/app.py``): median of fresh processes.
- Latency, served by uvicorn on Postgres with 10,000 jobs in the catalog, of
  ``GET /tables/{id}``, ``GET /ingestion/jobs?limit=50`` and ``POST /ingestion/jobs``:
  serial requests (what one Lambda container sees), p50/p99; then 8 concurrent clients on
  the two reads for ``--seconds``, requests/s and p99.
- The server's CPU per request (its processes' user + system seconds over the requests
  they served, each route on its own), which other work on a shared machine disturbs far
  less than requests/s: what bounds a process's throughput.
- Cold start through the Lambda handler: import, then the first request, with and without
  the SnapStart before-snapshot hook.
- References in the same run, printed as ratios: the import of the stack's libraries
  alone (:data:`FLOOR_IMPORT`), and ``bench/reference_api.py`` (the same SQL served by a
  bare Starlette app on the same uvicorn) for requests/s and CPU per request.

Machines here are shared and noisy: medians and percentiles over many requests, never
one timing. Postgres: ``DATALAKE_BENCH_PG`` (default the server at 127.0.0.1:5432),
through ``--driver`` (default psycopg, as the API function is deployed).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
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


#: What the handler cannot do without (the design card's stack): the floor of its import.
FLOOR_IMPORT = "import fastapi, mangum, sqlalchemy.orm, jwt"


def import_times(n: int, statement: str = "import app") -> list[float]:
    """Milliseconds to run ``statement`` (by default, import the API handler), once per
    fresh interpreter started in ``functions/api``."""
    code = f"import time; t = time.perf_counter(); {statement}; "
    code += "print((time.perf_counter() - t) * 1000)"
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


COLD = """
import json, os, sys, time
t0 = time.perf_counter()
import app
if os.environ.get("BENCH_SNAPSTART"):
    from datalake_api import snapstart
    snapstart.before_snapshot()
t1 = time.perf_counter()
path = sys.argv[1]
event = {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
         "headers": {"authorization": "Bearer " + os.environ["BENCH_TOKEN"], "host": "x"},
         "requestContext": {"http": {"method": "GET", "path": path, "sourceIp": "127.0.0.1",
                                     "protocol": "HTTP/1.1", "userAgent": "bench"},
                            "requestId": "bench", "stage": "$default"},
         "isBase64Encoded": False}
class Context:
    function_name = "api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:api"
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self):
        return 30000
answer = app.lambda_handler(event, Context())
t2 = time.perf_counter()
assert answer["statusCode"] == 200, answer
print(json.dumps([(t1 - t0) * 1000, (t2 - t1) * 1000]))
"""


def cold_starts(n: int, path: str, env: dict[str, str], snapstart: bool) -> list[list[float]]:
    """``[import ms, first request ms]`` of ``n`` fresh processes serving ``path`` through
    the Lambda handler; with ``snapstart``, the before-snapshot hook runs in between (what
    a restored SnapStart container has done before its first request)."""
    run_env = {**env, "PYTHONPATH": str(ROOT / "layers" / "datalake")}
    if snapstart:
        run_env["BENCH_SNAPSTART"] = "1"
    out = []
    for _ in range(n):
        r = subprocess.run(
            [sys.executable, "-c", COLD, path],
            cwd=ROOT / "functions" / "api",
            env=run_env,
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` and its children (uvicorn's
    workers), from Linux ``/proc``."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid_s, rest = stat.read_text().split(" ", 1)
        except OSError:
            continue
        fields = rest.rsplit(")", 1)[1].split()
        if int(pid_s) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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


def _client(
    base: str, headers: dict[str, str], paths: list[str], first: int, start: float, end: float
) -> tuple[list[float], list[str]]:
    """One client process: requests over ``paths`` from wall time ``start`` to ``end``."""
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        c.get("/")  # connect before the clock starts
        time.sleep(max(0.0, start - time.time()))
        k = first
        while time.time() < end:
            t = time.perf_counter()
            r = c.get(paths[k % len(paths)])
            lat.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:100]}")
            k += 1
    return lat, errors


def concurrent(
    base: str, headers: dict[str, str], paths: list[str], clients: int, seconds: float
) -> tuple[int, list[float]]:
    """Requests done and their latencies, ``clients`` processes cycling over ``paths``.

    Processes, not threads: client threads would share one GIL, and their wait for it
    would count in the server's latency.
    """
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        start = time.time() + 5.0  # after every client has started and connected
        results = pool.starmap(
            _client,
            [(base, headers, paths, i, start, start + seconds) for i in range(clients)],
        )
    errors = [e for _, errs in results for e in errs]
    if errors:
        sys.exit(f"{len(errors)} failed requests under concurrency, e.g. {errors[0]}")
    flat = [x for lat, _ in results for x in lat]
    return len(flat), flat


def serve(target: list[str], env: dict[str, str], workers: int, cwd: Path) -> tuple[Any, str]:
    """Start uvicorn on ``target`` (its app arguments) and wait until it answers."""
    import httpx

    port_no = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            *target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port_no),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(workers),
        ],
        env=env,
        cwd=cwd,
    )
    base = f"http://127.0.0.1:{port_no}"
    for _ in range(200):
        try:
            httpx.get(base + "/", timeout=1)
            return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    sys.exit(f"uvicorn {target[0]} did not start")


def stop(proc: Any) -> None:
    proc.terminate()
    proc.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--imports", type=int, default=10)
    ap.add_argument("--cold", type=int, default=5, help="fresh processes per cold-start case")
    ap.add_argument(
        "--workers", type=int, default=2, help="uvicorn worker processes (one per core here)"
    )
    ap.add_argument(
        "--driver", choices=["psycopg", "pg8000"], default="psycopg", help="Postgres driver"
    )
    ap.add_argument(
        "--cpu-rounds", type=int, default=3, help="rounds of the CPU-per-request measure"
    )
    args = ap.parse_args()

    imports = import_times(args.imports)
    floor = import_times(args.imports, FLOOR_IMPORT)
    print(
        f"API handler import: median {statistics.median(imports):.0f} ms over "
        f"{len(imports)} fresh processes (min {min(imports):.0f}, max {max(imports):.0f}); "
        f"goal <= {GOALS['import_ms']:.0f} ms\n"
        f"  reference, `{FLOOR_IMPORT}` alone: median {statistics.median(floor):.0f} ms; "
        f"the handler takes {statistics.median(imports) / statistics.median(floor):.2f}x"
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
    procs: list[Any] = []
    try:
        table_id = seed_catalog(url, args.jobs)
        # As autovacuum would have by now: the jobs page's count reads the visibility map.
        admin_db = pg8000.native.Connection(
            user="postgres", host=host, port=int(port or 5432), database=name
        )
        admin_db.run("VACUUM ANALYZE")
        admin_db.close()
        from datalake.tokens import make_token

        token = make_token("bench", ["admin"])
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DATALAKE_DB_DRIVER": args.driver,
            "PYTHONPATH": os.pathsep.join(sys.path[:2]),
        }
        reads = [f"/api/v1/tables/{table_id}", "/api/v1/ingestion/jobs?limit=50"]
        labels = ["GET /tables/{id}", "GET /ingestion/jobs?limit=50"]

        cold = {
            hooked: cold_starts(args.cold, reads[0], {**env, "BENCH_TOKEN": token}, hooked)
            for hooked in (False, True)
        }
        print(
            f"\ncold start, GET /tables/{{id}} through the Lambda handler, median of "
            f"{args.cold} fresh processes:"
        )
        for hooked, runs in cold.items():
            imp = statistics.median(r[0] for r in runs)
            first = statistics.median(r[1] for r in runs)
            what = "after the SnapStart hook" if hooked else "plain"
            print(f"  {what:25s} import {imp:6.0f} ms, first request {first:5.0f} ms")

        proc, base = serve(["datalake_api.main:create_app", "--factory"], env, args.workers, ROOT)
        procs.append(proc)
        headers = {"Authorization": "Bearer " + token}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
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

        ours = {"both reads": concurrent(base, headers, reads, args.clients, args.seconds)}
        cpu = {}
        for label, path in zip(labels, reads, strict=True):
            per = [
                cpu_per_request(base, headers, path, proc.pid, args.clients, args.seconds / 3)
                for _ in range(args.cpu_rounds)
            ]
            cpu[label] = per
        stop(procs.pop())

        ref_env = {**env, "REFERENCE_DATABASE_URL": url}
        proc, base = serve(["reference_api:app"], ref_env, args.workers, ROOT / "bench")
        procs.append(proc)
        ref = {"both reads": concurrent(base, {}, reads, args.clients, args.seconds)}
        ref_cpu = {}
        for label, path in zip(labels, reads, strict=True):
            ref_cpu[label] = [
                cpu_per_request(base, {}, path, proc.pid, args.clients, args.seconds / 3)
                for _ in range(args.cpu_rounds)
            ]
        stop(procs.pop())

        done, lat = ours["both reads"]
        ref_done, ref_lat = ref["both reads"]
        rps, ref_rps = done / args.seconds, ref_done / args.seconds
        print(
            f"\n{args.clients} concurrent clients on the two reads for {args.seconds:.0f} s, "
            f"{args.workers} uvicorn worker(s):\n"
            f"  datalake API        {rps:6.0f} requests/s (goal >= {GOALS['rps']:.0f}), p50 "
            f"{statistics.median(lat):.1f} ms, p99 {_pct(lat, 0.99):.1f} ms "
            f"(goal <= {GOALS['conc_p99_ms']:.0f})\n"
            f"  reference (bare)    {ref_rps:6.0f} requests/s, p50 "
            f"{statistics.median(ref_lat):.1f} ms, p99 {_pct(ref_lat, 0.99):.1f} ms "
            f"(bench/reference_api.py: same SQL, no framework)\n"
            f"  the API serves {rps / ref_rps:.2f}x the reference's requests/s"
        )
        print(
            f"\nserver CPU per request ({args.driver}; all worker processes), {args.clients} "
            f"clients, median of {args.cpu_rounds} rounds of {args.seconds / 3:.0f} s:"
        )
        for label in labels:
            mine, theirs = statistics.median(cpu[label]), statistics.median(ref_cpu[label])
            print(
                f"  {label:32s} API {mine:5.2f} ms, reference {theirs:5.2f} ms "
                f"({mine / theirs:.1f}x)"
            )
    finally:
        for proc in procs:
            stop(proc)
        from datalake.catalog.db import get_engine

        get_engine(url).dispose()
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
