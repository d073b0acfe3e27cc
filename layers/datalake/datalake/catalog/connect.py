"""TLS to the catalog's Postgres: libpq's ``sslmode`` / ``sslrootcert`` for both drivers.

pg8000 takes an ``ssl_context`` and refuses libpq's URL options (``?sslmode=require``
is a TypeError), while RDS for PostgreSQL 15+ refuses plain connections by default. So a
``DATABASE_URL`` written for libpq works here: :func:`install` registers a SQLAlchemy
``do_connect`` hook, for every engine, that takes ``sslmode`` and ``sslrootcert`` out of
the connection arguments and turns them into pg8000's ``ssl_context``:

============ =====================================================================
sslmode      pg8000 connection
============ =====================================================================
disable      plain TCP (``ssl_context=False``)
allow/prefer TLS when the server offers it, unverified (pg8000's default)
require      TLS or nothing; unverified, unless ``sslrootcert`` is given: then the
             chain is checked, as libpq does
verify-ca    TLS, the server's chain checked against the CA bundle
verify-full  as verify-ca, and the certificate must name the host
============ =====================================================================

psycopg is libpq and reads both options itself (same table); the hook only checks the
mode and fills in the CA bundle libpq would not know of. The CA bundle is
``sslrootcert`` (a path), else ``DATALAKE_DB_CA_BUNDLE``, else the RDS
global bundle when it is shipped in the layer
(``datalake/catalog/certs/rds-global-bundle.pem``), else the system's trust store.
A server whose certificate does not verify is a :class:`DatabaseTLSError` that says so in
one line, not a stack of socket errors. An RDS Proxy endpoint is just another host.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from datalake.errors import DatalakeError

#: The RDS global CA bundle, when the build put it into the layer.
RDS_BUNDLE = Path(__file__).parent / "certs" / "rds-global-bundle.pem"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class DatabaseTLSError(DatalakeError):
    """The catalog server's TLS could not be set up or verified (a configuration fault:
    a retry does not clear it)."""

    status_code = 503


def ca_bundle(sslrootcert: str | None = None) -> str | None:
    """The CA bundle to verify the server with; ``None`` means the system trust store.

    Parameters
    ----------
    sslrootcert:
        The URL's ``sslrootcert``: a PEM file, or ``system`` for the system store.
    """
    if sslrootcert == "system":
        return None
    chosen = sslrootcert or os.environ.get("DATALAKE_DB_CA_BUNDLE")
    if chosen:
        if not Path(chosen).is_file():
            raise DatabaseTLSError(f"sslrootcert {chosen}: no such file")
        return chosen
    return str(RDS_BUNDLE) if RDS_BUNDLE.is_file() else None


@lru_cache(maxsize=16)
def ssl_context(sslmode: str, sslrootcert: str | None = None) -> ssl.SSLContext | bool | None:
    """pg8000's ``ssl_context`` for a libpq ``sslmode`` (see the module's table).

    Parameters
    ----------
    sslmode:
        One of :data:`SSL_MODES`.
    sslrootcert:
        The CA bundle (path) or ``system``; default see :func:`ca_bundle`.

    Returns
    -------
    ssl.SSLContext | bool | None
        ``False`` for no TLS, ``None`` for pg8000's opportunistic TLS, else a context.

    Raises
    ------
    DatabaseTLSError
        For an unknown mode or a missing or unreadable CA file.
    """
    mode = sslmode.strip().lower()
    if mode not in SSL_MODES:
        raise DatabaseTLSError(f"sslmode={sslmode!r} is not one of {', '.join(SSL_MODES)}")
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        return None
    verify = mode != "require" or bool(sslrootcert)
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    bundle = ca_bundle(sslrootcert)
    if bundle is not None:
        try:
            ctx.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError) as e:
            raise DatabaseTLSError(f"sslrootcert {bundle}: not a readable PEM bundle: {e}") from e
    ctx.check_hostname = mode == "verify-full"
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def apply_tls(cparams: dict[str, Any]) -> None:
    """Replace libpq's ``sslmode``/``sslrootcert`` in pg8000 connect kwargs by ``ssl_context``.

    Parameters
    ----------
    cparams:
        The keyword arguments SQLAlchemy is about to pass to ``pg8000.connect``; changed
        in place. Without ``sslmode`` they are left as they are.
    """
    mode = cparams.pop("sslmode", None)
    root = cparams.pop("sslrootcert", None)
    if mode is None and root is None:
        return
    cparams["ssl_context"] = ssl_context(str(mode or "verify-full"), root)


def apply_libpq_tls(cparams: dict[str, Any]) -> None:
    """Check libpq's ``sslmode`` in psycopg connect kwargs and name the CA bundle.

    Parameters
    ----------
    cparams:
        The keyword arguments SQLAlchemy is about to pass to ``psycopg.connect``; changed
        in place. A verifying mode without ``sslrootcert`` gets :func:`ca_bundle`'s
        (libpq's own default, ``~/.postgresql/root.crt``, is not where ours live), and
        ``system`` becomes the system store's bundle, which libpq before 16 does not
        know by that name.

    Raises
    ------
    DatabaseTLSError
        For an unknown mode or a missing CA file.
    """
    mode = cparams.get("sslmode")
    root = cparams.get("sslrootcert")
    if mode is None and root is None:
        return
    mode = str(mode or "verify-full").strip().lower()
    if mode not in SSL_MODES:
        raise DatabaseTLSError(f"sslmode={mode!r} is not one of {', '.join(SSL_MODES)}")
    cparams["sslmode"] = mode
    if mode in ("disable", "allow", "prefer") or (mode == "require" and not root):
        cparams.pop("sslrootcert", None)  # libpq would verify a given root even then
        return
    bundle = ca_bundle(root)
    cparams["sslrootcert"] = bundle or ssl.get_default_verify_paths().cafile or "system"


def _do_connect(dialect: Any, _conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
    if dialect.driver == "psycopg":
        apply_libpq_tls(cparams)
    elif dialect.driver == "pg8000":
        apply_tls(cparams)
    else:
        return None  # SQLite connects as usual
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as e:
        reason = _tls_reason(e)
        if reason is None:
            raise
        host = cparams.get("host", "?")
        raise DatabaseTLSError(
            f"TLS to the catalog database at {host}:{cparams.get('port', 5432)} failed: {reason}"
        ) from e


def _tls_reason(error: BaseException) -> str | None:
    """The verification failure inside ``error`` (pg8000 wraps socket errors), if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"the server's certificate did not verify ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake error ({seen.reason or seen})"
        text = str(seen)
        if "Server refuses SSL" in text or "server does not support SSL" in text:
            return "the server refuses TLS, and sslmode requires it"
        if "certificate verify failed" in text or "does not match host name" in text:
            # libpq's words (psycopg): the line that says which check failed
            line = next(
                (x for x in text.splitlines() if "certificate" in x or "host name" in x), text
            )
            return f"the server's certificate did not verify ({line.strip()[:200]})"
        seen = seen.__cause__ or seen.__context__
    return None


_installed = False


def install() -> None:
    """Register the TLS hook for every SQLAlchemy engine of the process (idempotent)."""
    global _installed
    if not _installed:
        event.listen(Engine, "do_connect", _do_connect)
        _installed = True
