"""The catalog's pool on a real Postgres, on both drivers: a pooled connection the server
dropped while it sat idle is replaced before use (no error); one dropped while in steady
use (not pinged) fails one session as a TransientError, and the next one connects afresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text

from datalake.catalog import db
from datalake.errors import TransientError

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["pg8000", "psycopg"])
def engine(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[Engine]:
    url = postgres_url.replace("postgresql://", f"postgresql+{request.param}://")
    eng = db.get_engine(url)
    yield eng
    eng.dispose()
    db.get_engine.cache_clear()


def _backend_pid(engine: Engine) -> int:
    with db.session_scope(engine) as s:
        return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _drop_on_the_server(postgres_url: str, pid: int) -> None:
    import pg8000.native

    u = make_url(postgres_url)
    admin = pg8000.native.Connection(
        user=u.username or "postgres", host=u.host or "127.0.0.1", port=u.port or 5432
    )
    try:
        admin.run("SELECT pg_terminate_backend(:pid)", pid=pid)
    finally:
        admin.close()


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    engine: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _backend_pid(engine)
    _drop_on_the_server(postgres_url, pid)
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # every returned connection is "idle"
    assert _backend_pid(engine) != pid


def test_a_connection_dropped_in_steady_use_fails_once_then_reconnects(
    engine: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 3600.0)  # never pinged
    pid = _backend_pid(engine)
    _drop_on_the_server(postgres_url, pid)
    with pytest.raises(TransientError), db.session_scope(engine) as s:
        s.execute(text("SELECT 1"))
    assert _backend_pid(engine) != pid
