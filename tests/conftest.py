"""Shared fixtures: catalogs (SQLite and a real Postgres), the API client, tokens.

Postgres: the server at 127.0.0.1:5432 (trust auth) gets a fresh database per test run.
When none answers, a throwaway cluster is started if Postgres is installed; otherwise
the Postgres tests are skipped with a loud notice (CI always has the server).
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgcluster import Cluster, port_open

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "layers" / "datalake", ROOT / "functions" / "api"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
# Tests name many made-up buckets; the allow-list itself is tested with its own setting.
os.environ.setdefault("DATALAKE_SOURCE_BUCKETS", "*")

_NOTICES: list[str] = []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """The base URL of a Postgres server (no database part), or None."""
    if port_open("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432"
        return
    tmp = Path(tempfile.mkdtemp(prefix="dl-pg-"))
    cluster = None
    try:
        cluster = Cluster(tmp)
        cluster.start()
    except (OSError, TimeoutError, subprocess.CalledProcessError) as e:
        _NOTICES.append(f"could not start a throwaway Postgres: {e}")
        cluster = None
    if cluster is None:
        _NOTICES.append("NO POSTGRES: tests marked 'postgres' were SKIPPED")
        yield None
        return
    try:
        yield cluster.url
    finally:
        cluster.remove()


def _admin(server: str, sql: str) -> None:
    import pg8000.native
    from sqlalchemy.engine import make_url

    u = make_url(server.replace("postgresql://", "postgresql+pg8000://") + "/postgres")
    conn = pg8000.native.Connection(
        user=u.username or "postgres",
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        database="postgres",
    )
    try:
        conn.run(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str | None) -> Iterator[str]:
    """A fresh, migrated Postgres database for this test run (dropped afterwards)."""
    yield from _fresh_database(postgres_server, "test")


@pytest.fixture(scope="session")
def postgres_e2e_url(postgres_server: str | None) -> Iterator[str]:
    """A second database, for the functions deployed on LocalStack (never truncated)."""
    yield from _fresh_database(postgres_server, "e2e")


def _fresh_database(postgres_server: str | None, kind: str) -> Iterator[str]:
    if postgres_server is None:
        pytest.skip("no Postgres server reachable or installable")
    name = f"datalake_{kind}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin(postgres_server, f'CREATE DATABASE "{name}"')
    url = f"{postgres_server}/{name}"
    from datalake.catalog.migrate import upgrade

    upgrade(url)
    try:
        yield url
    finally:
        from datalake.catalog.db import get_engine, normalise_url

        get_engine(url).dispose()
        get_engine(normalise_url(url)).dispose()
        with contextlib.suppress(Exception):  # a leftover test database is harmless
            _admin(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite catalog file."""
    from datalake.catalog.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest) -> str:
    """Each catalog test runs on SQLite and on a real Postgres."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def use_catalog(catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the process's default catalog (DATABASE_URL) at ``catalog_url``."""
    from datalake.catalog import db

    monkeypatch.setenv("DATABASE_URL", catalog_url)
    db.get_engine.cache_clear()
    if catalog_url.startswith("postgresql"):
        _truncate(catalog_url)
    yield catalog_url
    # Close the test's pooled connections now: a dropped engine keeps them open until the
    # garbage collector finds it, and a run of many tests ran Postgres out of connections.
    for key in (None, catalog_url, db.normalise_url(catalog_url)):
        with contextlib.suppress(Exception):
            db.get_engine(key).dispose()
    db.get_engine.cache_clear()


def _truncate(url: str) -> None:
    from sqlalchemy import text

    from datalake.catalog.db import get_engine
    from datalake.catalog.models import Base

    with get_engine(url).begin() as conn:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} CASCADE"))


@pytest.fixture
def admin_token() -> str:
    from datalake.tokens import make_token

    return make_token("test-admin", ["admin"])


@pytest.fixture(scope="session")
def localstack() -> Iterator[object]:
    """LocalStack, started once per test run (and stopped if this run started it)."""
    local = str(ROOT / "infra" / "local")
    if local not in sys.path:
        sys.path.insert(0, local)
    import stack

    started_here = not stack.is_up()
    stack.start()
    try:
        yield stack
    finally:
        if started_here:
            stack.down()


_TESTS_RUN = [0]


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Collect garbage every few tests: an engine a test dropped (its cache cleared, not
    disposed) keeps its pooled Postgres connections open until the cyclic collector frees
    it, and a whole run (with the local stack's functions holding their own) reached the
    server's 100 connections."""
    _TESTS_RUN[0] += 1
    if _TESTS_RUN[0] % 20 == 0:
        gc.collect()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for notice in _NOTICES:
        terminalreporter.write_sep("!", notice, red=True, bold=True)
