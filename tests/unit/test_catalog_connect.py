"""libpq's sslmode mapped to pg8000's ssl_context (no server: see
tests/integration/test_catalog_tls.py for the real one)."""

from __future__ import annotations

import ssl

import pytest

from datalake.catalog.connect import DatabaseTLSError, apply_tls, ssl_context


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
