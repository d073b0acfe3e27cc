#!/usr/bin/env python3
"""This project's local stack: the catalog, LocalStack and the deployed template, together.

``stack.py`` knows LocalStack and CloudFormation; this module adds what the project needs
around them: a migrated catalog whose URL the Lambda functions receive as the template's
``DatabaseUrl`` parameter, and an admin token in ``.datalake/local.env``.

LocalStack keeps its state in memory, so when it starts cold the embedded SQLite catalog
starts empty too: a catalog that lists files the lake no longer holds would lie.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import stack  # noqa: E402

DEFAULT_CATALOG = stack.STATE / "catalog.db"


def default_catalog_url() -> str:
    """``DATABASE_URL`` when set, else the embedded SQLite file under ``.datalake``."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{DEFAULT_CATALOG}"


def ensure_stack(database_url: str | None = None, *, quiet: bool = False) -> dict[str, str]:
    """Bring the whole local stack up (idempotently) and return ``local.env``'s values.

    Parameters
    ----------
    database_url:
        The catalog the functions use; default :func:`default_catalog_url`.
    quiet:
        Unused; kept for callers that want to silence progress later.
    """
    from datalake.catalog import db
    from datalake.catalog.migrate import upgrade
    from datalake.tokens import make_token

    url = database_url or default_catalog_url()
    cold = not stack.is_up()
    if cold and url == f"sqlite:///{DEFAULT_CATALOG}":
        for suffix in ("", "-wal", "-shm"):
            Path(str(DEFAULT_CATALOG) + suffix).unlink(missing_ok=True)
    DEFAULT_CATALOG.parent.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    db.get_engine.cache_clear()
    token = make_token("local-admin", ["admin"], ttl_seconds=30 * 86400)
    stack.up(
        params={"DatabaseUrl": url},
        extra_env={"DATABASE_URL": url, "DATALAKE_TOKEN": token},
    )
    return stack.read_local_env()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            env = ensure_stack()
            print(f"local stack up; API at {env.get('DATALAKE_API_URL')}")
            print("load its settings with:  source .datalake/local.env")
        elif args.command == "down":
            stack.down()
        else:
            print("up" if stack.is_up() else "down")
    except stack.StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
