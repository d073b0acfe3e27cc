"""libpq's sslmode mapped to pg8000's ssl_context and checked for psycopg, and the
driver a plain URL takes (no server: see tests/integration/test_catalog_tls.py for the
real one)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from datalake.catalog.connect import DatabaseTLSError, apply_libpq_tls, apply_tls, ssl_context
from datalake.catalog.db import normalise_url


def test_modes_map_to_pg8000s_ssl_context() -> None:
    assert ssl_context("disable") is False
    assert ssl_context("prefer") is None
    req = ssl_context("require")
    assert isinstance(req, ssl.SSLContext) and req.verify_mode == ssl.CERT_NONE
    full = ssl_context("verify-full", "system")
    assert isinstance(full, ssl.SSLContext)
    assert full.verify_mode == ssl.CERT_REQUIRED and full.check_hostname
    ca = ssl_context("verify-ca", "system")
    assert isinstance(ca, ssl.SSLContext)
    assert ca.verify_mode == ssl.CERT_REQUIRED and not ca.check_hostname


def test_url_options_leave_the_connect_kwargs() -> None:
    cparams = {"host": "db", "sslmode": "require", "user": "u"}
    apply_tls(cparams)
    assert "sslmode" not in cparams and isinstance(cparams["ssl_context"], ssl.SSLContext)
    plain = {"host": "db"}
    apply_tls(plain)
    assert plain == {"host": "db"}


def test_unknown_mode_and_missing_ca_are_clear_errors() -> None:
    with pytest.raises(DatabaseTLSError, match="not one of"):
        ssl_context("sometimes")
    with pytest.raises(DatabaseTLSError, match="no such file"):
        ssl_context("verify-full", "/nonexistent/ca.pem")


def test_libpq_options_stay_for_psycopg_with_our_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("DATALAKE_DB_CA_BUNDLE", str(bundle))
    full = {"host": "db", "sslmode": "Verify-Full"}
    apply_libpq_tls(full)
    assert full == {"host": "db", "sslmode": "verify-full", "sslrootcert": str(bundle)}
    # require verifies nothing unless a root is named (as libpq: a named root is checked)
    req = {"sslmode": "require"}
    apply_libpq_tls(req)
    assert req == {"sslmode": "require"}
    checked = {"sslmode": "require", "sslrootcert": str(bundle)}
    apply_libpq_tls(checked)
    assert checked == {"sslmode": "require", "sslrootcert": str(bundle)}
    plain = {"host": "db"}
    apply_libpq_tls(plain)
    assert plain == {"host": "db"}
    with pytest.raises(DatabaseTLSError, match="not one of"):
        apply_libpq_tls({"sslmode": "sometimes"})
    with pytest.raises(DatabaseTLSError, match="no such file"):
        apply_libpq_tls({"sslmode": "verify-ca", "sslrootcert": "/nonexistent/ca.pem"})


def test_a_plain_url_takes_the_configured_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATALAKE_DB_DRIVER", raising=False)
    assert normalise_url("postgres://u@h/d") == "postgresql+pg8000://u@h/d"
    monkeypatch.setenv("DATALAKE_DB_DRIVER", "psycopg")
    assert normalise_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    # the URL's own driver wins
    assert normalise_url("postgresql+pg8000://u@h/d") == "postgresql+pg8000://u@h/d"
    monkeypatch.setenv("DATALAKE_DB_DRIVER", "asyncpg")
    with pytest.raises(ValueError, match="DATALAKE_DB_DRIVER"):
        normalise_url("postgresql://u@h/d")
