"""Catalog connections: Postgres when ``DATABASE_URL`` says so, else SQLite.

Postgres goes through pg8000 (pure Python, in every layer) or psycopg 3 (libpq, C; about
20-40% less CPU per API read, see the README's Performance section). The URL's
driver decides (``postgresql+pg8000://``, ``postgresql+psycopg://``); a plain
``postgres(ql)://`` takes ``DATALAKE_DB_DRIVER`` (default ``pg8000``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from datalake.aws import secrets
from datalake.catalog import connect
from datalake.catalog.breaker import breaker
from datalake.errors import ConstraintConflict, DatalakeError, InvalidInput, TransientError

DEFAULT_SQLITE = ".datalake/catalog.db"
connect.install()  # sslmode/sslrootcert in DATABASE_URL -> pg8000's ssl_context (connect.py)
#: Execution option marking a read-only transaction.
READONLY = "datalake_readonly"
#: Connections per process, opened as needed and then kept: a Lambda container serves
#: one request at a time (one connection); uvicorn's thread pool serves many. No overflow:
#: an overflow connection is closed on its return, so a load just above the pool's size
#: would open and close a connection for most requests (~25 ms of CPU each with pg8000).
POOL_SIZE = int(os.environ.get("DATALAKE_DB_POOL_SIZE") or 10)
SOCKET_TIMEOUT_SECONDS = 15
#: A pooled connection idle for longer is pinged before use (a frozen Lambda container,
#: a proxy's idle timeout); one in steady use is not: a statement on a connection the
#: server dropped fails, session_scope invalidates it (and the pool the connections
#: older than it), and the next request connects afresh.
IDLE_PING_SECONDS = 30.0
#: Connections are replaced after this many seconds (server-side idle and lifetime
#: limits, RDS Proxy pinning), whatever their use.
RECYCLE_SECONDS = 1800
#: The Postgres drivers the catalog speaks through (SQLAlchemy's dialect names).
DRIVERS = ("pg8000", "psycopg")


def normalise_url(url: str | None) -> str:
    """Return a SQLAlchemy URL, mapping plain ``postgres(ql)://`` to a driver.

    Parameters
    ----------
    url:
        ``DATABASE_URL`` as a user writes it; ``None`` means the embedded SQLite file.
        Without a driver, ``DATALAKE_DB_DRIVER`` (one of :data:`DRIVERS`) names it.

    Raises
    ------
    ValueError
        For a ``DATALAKE_DB_DRIVER`` that is not one of :data:`DRIVERS` (a configuration
        fault: the API answers 500 and logs it).
    """
    url = url or secrets.database_url_from_env()  # DATABASE_SECRET_ARN: aws/secrets.py
    if not url:
        path = Path(os.environ.get("DATALAKE_HOME", ".")) / DEFAULT_SQLITE
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path.resolve()}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            driver = os.environ.get("DATALAKE_DB_DRIVER") or DRIVERS[0]
            if driver not in DRIVERS:
                raise ValueError(f"DATALAKE_DB_DRIVER={driver!r} is not one of {DRIVERS}")
            return f"postgresql+{driver}://" + url[len(prefix) :]
    return url


def preload_driver() -> str:
    """Import the catalog's SQLAlchemy dialect and its database driver, connecting to
    nothing and reading no secret.

    For a SnapStart snapshot (``datalake_api.snapstart``): importing psycopg and the
    Postgres dialect was about two thirds of an API container's first request. The URL
    itself may be a secret (``DATABASE_SECRET_ARN``), which rotates and must not be
    frozen into a snapshot, so only its driver is decided here: ``DATABASE_URL``'s, or
    ``DATALAKE_DB_DRIVER``'s when the credentials come from a secret.

    Returns
    -------
    str
        The SQLAlchemy driver name loaded (``postgresql+psycopg``, ``sqlite``...).
    """
    from sqlalchemy.engine import make_url

    url = os.environ.get("DATABASE_URL")
    if not url:
        url = "postgresql://" if os.environ.get("DATABASE_SECRET_ARN") else "sqlite://"
    parsed = make_url(normalise_url(url))
    parsed.get_dialect().import_dbapi()
    return parsed.drivername


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
            # Reads take no write lock: WAL serves them beside a writer.
            if conn.get_execution_options().get(READONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if real.startswith("postgresql+pg8000"):
        _memoise_pg8000_paramstyle()
        connect_args: dict[str, Any] = {"timeout": SOCKET_TIMEOUT_SECONDS}
    else:
        # libpq has no socket timeout: TCP keepalives and tcp_user_timeout fail a dead
        # peer within about as long instead.
        connect_args = {
            "connect_timeout": SOCKET_TIMEOUT_SECONDS,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": SOCKET_TIMEOUT_SECONDS * 1000,
        }
    engine = create_engine(
        real,
        pool_size=POOL_SIZE,
        max_overflow=0,
        pool_recycle=RECYCLE_SECONDS,
        # A pool with no free connection answers 503 within a second, not after 30 s.
        pool_timeout=1,
        # No statement of the catalog runs this long; a dead peer fails instead of hanging.
        connect_args=connect_args,
    )
    _ping_after_idle(engine)
    return engine


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it sat idle for a while.

    ``pool_pre_ping`` costs a round trip (two with pg8000: it opens a transaction) on
    every checkout, i.e. on every request. A connection returned a moment ago is as good
    as the server that answered it then; one that idled may have been dropped (a frozen
    container, an idle timeout), and for it the ping spares the request a 503.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["datalake_returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("datalake_returned_at")
        if returned is None or time.monotonic() - returned < IDLE_PING_SECONDS:
            return  # new, or in steady use
        try:
            alive = dialect.do_ping(dbapi_conn)
        except Exception as e:
            raise DisconnectionError(f"an idle pooled connection is gone: {e}") from e
        if not alive:
            raise DisconnectionError("an idle pooled connection is gone")


def _memoise_pg8000_paramstyle() -> None:
    """Cache pg8000's rewrite of ``%s`` placeholders into ``$n``, per statement text.

    pg8000 rescans every statement's text character by character in Python on every
    execute (about 0.5 ms for one of the ORM's 30-column selects, the largest single cost
    of a catalog read). For the ``format`` style SQLAlchemy uses, the rewritten text
    depends on the text alone and the arguments pass through unchanged, so a bounded
    cache keyed on the text returns exactly what the scan would.
    """
    import pg8000.dbapi
    import pg8000.legacy

    original = pg8000.dbapi.convert_paramstyle
    if getattr(original, "_datalake_memoised", False):
        return

    @lru_cache(maxsize=1024)
    def rewrite(style: str, query: str) -> str:
        return str(original(style, query, ())[0])

    def convert_paramstyle(style: str, query: str, args: Any) -> tuple[str, Any]:
        if style != "format":
            return original(style, query, args)
        return rewrite(style, query), args

    convert_paramstyle._datalake_memoised = True  # type: ignore[attr-defined]
    convert_paramstyle.__wrapped__ = original  # type: ignore[attr-defined]
    pg8000.dbapi.convert_paramstyle = convert_paramstyle
    pg8000.legacy.convert_paramstyle = convert_paramstyle  # legacy imported the name


def get_read_engine() -> Engine:
    """The engine for read-only transactions: ``DATABASE_READ_URL`` (a Postgres read
    replica) when set, else the catalog's own engine, flagged read-only (on SQLite its
    transactions then take no write lock)."""
    url = os.environ.get("DATABASE_READ_URL")
    base = get_engine(url) if url else get_engine()
    return _readonly(base)


@lru_cache(maxsize=8)
def _readonly(engine: Engine) -> Engine:
    if engine.dialect.driver == "psycopg":
        # Under Postgres's READ COMMITTED every statement reads its own snapshot, inside
        # a transaction or not: a read's BEGIN and COMMIT buy nothing but two round
        # trips. psycopg switches autocommit on the client (pg8000 would send two
        # statements to switch it back on the connection's return).
        return engine.execution_options(**{READONLY: True}, isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{READONLY: True})


@lru_cache(maxsize=8)
def _factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_transient(error: BaseException) -> bool:
    """Whether a database error is one a retry may clear (a dropped or refused
    connection, a server restarting, a lock timeout, no free pooled connection), as
    opposed to a bad statement."""
    if isinstance(error, ConnectionError | TimeoutError | PoolTimeout):
        return True  # pg8000 lets some socket errors through unwrapped
    if not isinstance(error, DBAPIError):
        return False
    return bool(error.connection_invalidated) or isinstance(
        error, OperationalError | InterfaceError
    )


@contextmanager
def session_scope(
    engine: Engine | None = None, *, readonly: bool = False, fail_fast: bool = False
) -> Iterator[Session]:
    """A session committed on success and rolled back on error.

    Parameters
    ----------
    engine:
        The engine to use; by default the catalog's (or, with ``readonly``, the one of
        :func:`get_read_engine`).
    readonly:
        The session only reads: it may go to a read replica, and on SQLite it takes no
        write lock.
    fail_fast:
        Consult the process's circuit breaker (the API does: a caller gets its 503 at
        once). Workers leave it off; the state machine's retries pace them instead.

    Raises
    ------
    TransientError
        For a database fault a retry may clear (see :func:`is_transient`), and at once,
        without touching the pool, while the circuit breaker is open after one; the state
        machine retries it by name, the API answers 503 with ``Retry-After``.
    """
    if fail_fast:
        breaker.check()
    factory = _factory(engine or (get_read_engine() if readonly else get_engine()))
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException as e:
        if isinstance(e, DatalakeError):
            with suppress(Exception):
                session.rollback()
        else:
            # Anything unexpected (a failed statement, a driver error half-way through a
            # message) may leave the connection in an unknown state: drop it from the
            # pool rather than hand it to the next request.
            with suppress(Exception):
                session.invalidate()
        if is_transient(e):
            if fail_fast:
                breaker.record_failure()
            raise TransientError(f"the catalog database is unavailable: {_first_line(e)}") from e
        if fail_fast:
            breaker.record_success()  # the database answered; only the request was wrong
        # What reaches here uncaught failed the change as a whole (often at commit): say
        # so as a refusal, never as a 500 that might read as "maybe written".
        state = sqlstate(e)
        if isinstance(e, IntegrityError) or state.startswith("23"):
            raise ConstraintConflict(
                "the change conflicts with a concurrent one and was not saved; retry"
            ) from e
        if isinstance(e, DataError) or state.startswith("22"):
            raise InvalidInput(f"a value does not fit the catalog: {_first_line(e)}") from e
        raise
    else:
        if fail_fast:
            breaker.record_success()
    finally:
        session.close()


def sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a database error ('' when it has none): pg8000 reports every
    server error as a ProgrammingError whose first argument holds the code under 'C';
    psycopg's errors carry it as ``sqlstate``."""
    orig = getattr(error, "orig", None)
    args = getattr(orig, "args", None) or ()
    if args and isinstance(args[0], dict):
        return str(args[0].get("C", ""))
    return str(getattr(orig, "sqlstate", "") or "")


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.splitlines()[0][:300] if text else type(error).__name__
