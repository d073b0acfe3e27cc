"""Catalog connections: Postgres through pg8000 when ``DATABASE_URL`` says so, else SQLite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from datalake.aws import secrets
from datalake.catalog import connect
from datalake.errors import TransientError

DEFAULT_SQLITE = ".datalake/catalog.db"
connect.install()  # sslmode/sslrootcert in DATABASE_URL -> pg8000's ssl_context (connect.py)


def normalise_url(url: str | None) -> str:
    """Return a SQLAlchemy URL, mapping plain ``postgres(ql)://`` to the pg8000 driver.

    Parameters
    ----------
    url:
        ``DATABASE_URL`` as a user writes it; ``None`` means the embedded SQLite file.
    """
    url = url or secrets.database_url_from_env()  # DATABASE_SECRET_ARN: aws/secrets.py
    if not url:
        path = Path(os.environ.get("DATALAKE_HOME", ".")) / DEFAULT_SQLITE
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path.resolve()}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+pg8000://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Several Lambda processes share the file locally: WAL lets readers run beside a
    # writer, and the busy timeout queues writers instead of failing them.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """Create (once per process and URL) the SQLAlchemy engine of the catalog."""
    real = normalise_url(url if url is not None else os.environ.get("DATABASE_URL"))
    if real.startswith("sqlite"):
        engine = create_engine(real, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite's own transaction handling defers BEGIN; take the write lock at BEGIN
        # so optimistic read-then-write sequences cannot deadlock between processes.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(real, pool_pre_ping=True, pool_size=2, max_overflow=2)


@lru_cache(maxsize=8)
def _factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_transient(error: BaseException) -> bool:
    """Whether a database error is one a retry may clear (a dropped or refused
    connection, a server restarting, a lock timeout), as opposed to a bad statement."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True  # pg8000 lets some socket errors through unwrapped
    if not isinstance(error, DBAPIError):
        return False
    return bool(error.connection_invalidated) or isinstance(
        error, OperationalError | InterfaceError
    )


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session committed on success and rolled back on error.

    Raises
    ------
    TransientError
        For a database fault a retry may clear (see :func:`is_transient`); the state
        machine retries it by name, the API answers 503.
    """
    factory = _factory(engine or get_engine())
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException as e:
        with suppress(Exception):  # the connection may be the thing that failed
            session.rollback()
        if is_transient(e):
            raise TransientError(f"the catalog database is unavailable: {_first_line(e)}") from e
        raise
    finally:
        session.close()


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.splitlines()[0][:300] if text else type(error).__name__
