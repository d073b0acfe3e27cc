"""API tokens: HS256 JWTs whose ``roles`` claim grants reader, writer or admin."""

from __future__ import annotations

import time
from typing import Any

import jwt

from datalake.config import get_settings
from datalake.errors import Unauthorized


def make_token(
    subject: str, roles: list[str], *, ttl_seconds: int = 30 * 86400, secret: str | None = None
) -> str:
    """Sign a token for ``subject`` holding ``roles``.

    Parameters
    ----------
    subject:
        Who the token speaks for (recorded as the actor in the audit trail).
    roles:
        Any of ``reader``, ``writer``, ``admin``.
    ttl_seconds:
        Lifetime of the token.
    secret:
        Signing secret; defaults to ``DATALAKE_JWT_SECRET``.
    """
    settings = get_settings()
    now = int(time.time())
    claims = {"sub": subject, "roles": roles, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret or settings.jwt_secret, algorithm=settings.jwt_algorithm)


def verify_token(token: str) -> dict[str, Any]:
    """Return a token's claims.

    Raises
    ------
    Unauthorized
        When the token is malformed, badly signed or expired.
    """
    settings = get_settings()
    try:
        return dict(jwt.decode(token, settings.jwt_secret, algorithms=[settings.jwt_algorithm]))
    except jwt.ExpiredSignatureError as e:
        raise Unauthorized("token expired") from e
    except jwt.PyJWTError as e:
        raise Unauthorized("invalid token") from e
