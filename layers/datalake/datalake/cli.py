"""The ``datalake`` command line: catalog migrations, tokens, and the common API calls.

API calls go to ``DATALAKE_API_URL`` with ``DATALAKE_TOKEN``; when those are unset and the
local stack is up, they are read from ``.datalake/local.env``.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def load_local_env(path: str | Path = ".datalake/local.env") -> dict[str, str]:
    """Parse the shell assignments of ``.datalake/local.env`` (missing file -> {})."""
    out: dict[str, str] = {}
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip().strip("'\"")
    return out


class ApiClient:
    """A small JSON client of the HTTP API (stdlib only)."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 60) -> None:
        self.base = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> ApiClient:
        env = {**load_local_env(), **{k: v for k, v in os.environ.items() if v}}
        url = env.get("DATALAKE_API_URL")
        if not url:
            raise SystemExit("DATALAKE_API_URL is not set and the local stack is not up (make up)")
        return cls(url, env.get("DATALAKE_TOKEN"))

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"detail": raw.decode(errors="replace")}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Like :meth:`request`, raising ``RuntimeError`` on a non-2xx answer."""
        status, payload = self.request(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status}: {payload}")
        return payload


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datalake", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="apply catalog migrations to DATABASE_URL (default SQLite)")
    tok = sub.add_parser("token", help="print a signed API token")
    tok.add_argument("--subject", default="local-admin")
    tok.add_argument("--role", action="append", default=None, choices=["reader", "writer", "admin"])
    tok.add_argument("--ttl-days", type=int, default=30)
    sub.add_parser("tables", help="list tables")
    files = sub.add_parser("files", help="list a table's committed files")
    files.add_argument("table_id")
    jobs = sub.add_parser("jobs", help="list jobs")
    jobs.add_argument("--table-id")
    jobs.add_argument("--status")
    job = sub.add_parser("job", help="show a job")
    job.add_argument("job_id")
    ingest = sub.add_parser("ingest", help="create and start a job")
    ingest.add_argument("table_id")
    ingest.add_argument("sources", nargs="+")
    ingest.add_argument("--format")
    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id")
    args = parser.parse_args(argv)

    if args.cmd == "migrate":
        from datalake.catalog.migrate import upgrade

        upgrade()
        print("catalog migrated")
        return 0
    if args.cmd == "token":
        from datalake.tokens import make_token

        print(make_token(args.subject, args.role or ["admin"], ttl_seconds=args.ttl_days * 86400))
        return 0

    api = ApiClient.from_env()
    if args.cmd == "tables":
        _print(api.call("GET", "/api/v1/tables/"))
    elif args.cmd == "files":
        _print(api.call("GET", f"/api/v1/tables/{args.table_id}/files"))
    elif args.cmd == "jobs":
        query = "&".join(
            f"{k}={v}" for k, v in (("table_id", args.table_id), ("status", args.status)) if v
        )
        _print(api.call("GET", "/api/v1/ingestion/jobs" + (f"?{query}" if query else "")))
    elif args.cmd == "job":
        _print(api.call("GET", f"/api/v1/ingestion/jobs/{args.job_id}"))
    elif args.cmd == "ingest":
        body: dict[str, Any] = {"table_id": args.table_id, "sources": args.sources}
        if args.format:
            body["format"] = args.format
        created = api.call("POST", "/api/v1/ingestion/jobs", body)
        _print(api.call("POST", f"/api/v1/ingestion/jobs/{created['id']}/start"))
    elif args.cmd == "cancel":
        _print(api.call("POST", f"/api/v1/ingestion/jobs/{args.job_id}/cancel"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
