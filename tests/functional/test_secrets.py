"""Credentials from AWS Secrets Manager (moto): the catalog's and the token signing key."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from moto import mock_aws
from sqlalchemy import text
from sqlalchemy.engine import make_url

from datalake import config, tokens
from datalake.aws import clients, secrets
from datalake.catalog import db
from datalake.errors import Unauthorized


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for k in ("DATABASE_URL", "DATABASE_SECRET_ARN", "DATABASE_HOST", "DATABASE_SSLMODE"):
        monkeypatch.delenv(k, raising=False)
    with mock_aws():
        clients.reset()
        secrets.reset()
        config.get_settings.cache_clear()
        yield clients.client("secretsmanager")
    clients.reset()
    secrets.reset()
    config.get_settings.cache_clear()
    db.get_engine.cache_clear()


def test_the_catalog_url_comes_from_an_rds_shaped_secret(
    sm: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = sm.create_secret(  # type: ignore[attr-defined]
        Name="rds!db-1",
        SecretString=json.dumps(
            {
                "username": "lake",
                "password": "p@ss/w:rd",
                "host": "db.example",
                "port": 6432,
                "dbname": "catalog",
                "engine": "postgres",
            }
        ),
    )["ARN"]
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    url = make_url(db.normalise_url(None))
    assert url.drivername == "postgresql+pg8000"
    # the API function's driver applies to secret credentials too
    monkeypatch.setenv("DATALAKE_DB_DRIVER", "psycopg")
    assert make_url(db.normalise_url(None)).drivername == "postgresql+psycopg"
    monkeypatch.delenv("DATALAKE_DB_DRIVER")
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "lake",
        "p@ss/w:rd",
        "db.example",
        6432,
        "catalog",
    )
    assert url.query["sslmode"] == "require"
    # an RDS Proxy endpoint (or any host) given beside a user/password-only secret
    monkeypatch.setenv("DATABASE_HOST", "proxy.proxy-abc.us-east-1.rds.amazonaws.com")
    monkeypatch.setenv("DATABASE_SSLMODE", "verify-full")
    url = make_url(secrets.database_url(arn))
    assert url.host == "proxy.proxy-abc.us-east-1.rds.amazonaws.com"
    assert url.query["sslmode"] == "verify-full"
    # DATABASE_URL, when set, wins (local runs)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    assert db.normalise_url(None) == "sqlite:///x.db"


def test_a_secret_is_read_once_per_container(sm: object) -> None:
    arn = sm.create_secret(Name="k", SecretString="first")["ARN"]  # type: ignore[attr-defined]
    assert secrets.jwt_secret(arn) == "first"
    sm.put_secret_value(SecretId=arn, SecretString="second")  # type: ignore[attr-defined]
    assert secrets.jwt_secret(arn) == "first"  # cached: no call per request
    secrets.reset()
    assert secrets.jwt_secret(arn) == "second"


def test_tokens_are_signed_with_the_secret_managers_key(
    sm: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = sm.create_secret(  # type: ignore[attr-defined]
        Name="jwt", SecretString="generated-key-0123456789abcdef0123456789abcdef"
    )["ARN"]
    local = tokens.make_token("someone", ["admin"])  # the local development key
    monkeypatch.setenv("DATALAKE_JWT_SECRET_ARN", arn)
    config.get_settings.cache_clear()
    assert config.get_settings().jwt_secret == "generated-key-0123456789abcdef0123456789abcdef"
    good = tokens.make_token("someone", ["admin"])
    assert tokens.verify_token(good)["sub"] == "someone"
    with pytest.raises(Unauthorized):
        tokens.verify_token(local)


def test_a_missing_secret_is_a_clear_error(sm: object) -> None:
    with pytest.raises(secrets.SecretUnavailable, match="cannot read secret"):
        secrets.database_url("arn:aws:secretsmanager:us-east-1:123456789012:secret:nope")
    arn = sm.create_secret(Name="bad", SecretString=json.dumps({"username": "u"}))["ARN"]  # type: ignore[attr-defined]
    with pytest.raises(secrets.SecretUnavailable, match="needs username and password"):
        secrets.database_url(arn)


@pytest.mark.postgres
def test_the_catalog_connects_with_secret_credentials(
    sm: object, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = make_url(postgres_url)
    arn = sm.create_secret(  # type: ignore[attr-defined]
        Name="rds!real",
        SecretString=json.dumps(
            {
                "username": u.username,
                "password": "unused-with-trust-auth",
                "host": u.host,
                "port": u.port,
                "dbname": u.database,
            }
        ),
    )["ARN"]
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("DATABASE_SSLMODE", "disable")  # the test server has no TLS
    db.get_engine.cache_clear()
    engine = db.get_engine()
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == u.database
    finally:
        engine.dispose()
