"""Secrets from AWS Secrets Manager, read once per container (process).

Two secrets keep credentials out of Lambda's plain environment variables:

* ``DATABASE_SECRET_ARN``: the catalog's credentials in the shape RDS writes for a
  managed or rotated secret: ``{"username", "password", "host", "port", "dbname"}``.
  ``host``, ``port`` and ``dbname`` may be missing (RDS-managed master secrets hold only
  the user and password): ``DATABASE_HOST`` (an RDS instance or an RDS Proxy endpoint),
  ``DATABASE_PORT`` and ``DATABASE_NAME`` fill them in. ``DATABASE_SSLMODE`` (default
  ``require``) and ``DATABASE_SSLROOTCERT`` become the URL's TLS options
  (see :mod:`datalake.catalog.connect`).
* ``DATALAKE_JWT_SECRET_ARN``: the HS256 key that signs API tokens, as the plain secret
  string (what ``GenerateSecretString`` without a template makes), or JSON with a
  ``secret`` key.

``DATABASE_URL``, when set, wins over the database secret (local runs and tests).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from datalake.errors import DatalakeError


class SecretUnavailable(DatalakeError):
    """A configured secret could not be read or does not have the expected shape."""

    status_code = 503


@lru_cache(maxsize=8)
def secret_string(arn: str) -> str:
    """The ``SecretString`` of a secret, fetched once per process.

    Parameters
    ----------
    arn:
        The secret's ARN (or name).

    Raises
    ------
    SecretUnavailable
        When Secrets Manager refuses or the secret has no string value.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from datalake.aws.clients import client

    try:
        value = client("secretsmanager").get_secret_value(SecretId=arn)
    except (ClientError, BotoCoreError) as e:
        raise SecretUnavailable(f"cannot read secret {arn}: {e}") from e
    text = value.get("SecretString")
    if not text:
        raise SecretUnavailable(f"secret {arn} has no SecretString")
    return str(text)


def secret_json(arn: str) -> dict[str, Any]:
    """A secret whose string is a JSON object."""
    try:
        data = json.loads(secret_string(arn))
    except ValueError as e:
        raise SecretUnavailable(f"secret {arn} is not JSON") from e
    if not isinstance(data, dict):
        raise SecretUnavailable(f"secret {arn} is not a JSON object")
    return data


def jwt_secret(arn: str) -> str:
    """The token signing key held by the secret ``arn`` (plain, or JSON ``{"secret"}``)."""
    text = secret_string(arn)
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if isinstance(data, dict) and data.get("secret"):
            return str(data["secret"])
        raise SecretUnavailable(f"secret {arn}: JSON without a 'secret' key")
    return text


def database_url(arn: str, environ: Any = None) -> str:
    """A ``postgresql://`` URL built from an RDS-shaped secret (see the module doc).

    No driver in it: ``DATALAKE_DB_DRIVER`` picks one (``catalog.db.normalise_url``), so
    the API function's psycopg applies on AWS too, where the credentials are a secret.

    Parameters
    ----------
    arn:
        ``DATABASE_SECRET_ARN``.
    environ:
        Where ``DATABASE_HOST``, ``DATABASE_PORT``, ``DATABASE_NAME``, ``DATABASE_SSLMODE``
        and ``DATABASE_SSLROOTCERT`` are read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    data = secret_json(arn)
    user = data.get("username")
    password = data.get("password")
    host = env.get("DATABASE_HOST") or data.get("host")
    if not (user and password and host):
        raise SecretUnavailable(
            f"secret {arn} needs username and password, and a host (in it or DATABASE_HOST)"
        )
    port = env.get("DATABASE_PORT") or data.get("port") or 5432
    name = env.get("DATABASE_NAME") or data.get("dbname") or "postgres"
    query = {"sslmode": env.get("DATABASE_SSLMODE") or "require"}
    if env.get("DATABASE_SSLROOTCERT"):
        query["sslrootcert"] = env["DATABASE_SSLROOTCERT"]
    q = "&".join(f"{k}={quote(str(v), safe='/-')}" for k, v in query.items())
    return (
        f"postgresql://{quote(str(user), safe='')}:{quote(str(password), safe='')}"
        f"@{host}:{int(port)}/{quote(str(name), safe='')}?{q}"
    )


def database_url_from_env() -> str | None:
    """``DATABASE_URL`` if set, else the URL from ``DATABASE_SECRET_ARN``, else ``None``."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    arn = os.environ.get("DATABASE_SECRET_ARN")
    return database_url(arn) if arn else None


def reset() -> None:
    """Forget fetched secrets (tests; a rotation is picked up by a new container)."""
    secret_string.cache_clear()
