"""API tokens: HS256 JWTs whose ``roles`` claim grants reader, writer or admin."""

from __future__ import annotations

import time
from typing import Any

import jwt

from datalake.config import LOCAL_JWT_SECRET, get_settings
from datalake.domain.limits import NAME_MAX, text_problem
from datalake.errors import Unauthorized

#: HS256 wants a key at least as long as its 256-bit output (RFC 7518, 3.2).
MIN_SECRET_LENGTH = 32


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
    claims = {
        "sub": subject,
        "roles": roles,
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    return jwt.encode(claims, secret or signing_secret(), algorithm=settings.jwt_algorithm)


def signing_secret() -> str:
    """The HMAC secret tokens are signed and checked with.

    Raises
    ------
    Unauthorized
        When it is shorter than :data:`MIN_SECRET_LENGTH`, or is the development secret
        outside a local stack: a deployment that forgot to set one must refuse every
        token rather than accept tokens anyone can sign with the published secret.
    """
    settings = get_settings()
    secret = settings.jwt_secret
    if len(secret) < MIN_SECRET_LENGTH:
        raise Unauthorized(
            f"the server's token secret is shorter than {MIN_SECRET_LENGTH} characters; "
            "no token is accepted until DATALAKE_JWT_SECRET is set properly"
        )
    if secret == LOCAL_JWT_SECRET and not settings.allows_dev_secret:
        raise Unauthorized(
            "the server still uses the published development token secret; no token is "
            "accepted until DATALAKE_JWT_SECRET is set"
        )
    return secret


def _claims_problem(claims: dict[str, Any]) -> str | None:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= NAME_MAX or text_problem(sub):
        return f"'sub' must be a string of 1 to {NAME_MAX} characters"
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        return "'roles' must be a list of role names"
    return None


def verify_token(token: str) -> dict[str, Any]:
    """Return a token's claims.

    Raises
    ------
    Unauthorized
        When the token is malformed, badly signed or expired.
    """
    settings = get_settings()
    secret = signing_secret()
    try:
        claims = dict(
            jwt.decode(
                token,
                secret,
                algorithms=[settings.jwt_algorithm],
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        )
    except jwt.ExpiredSignatureError as e:
        raise Unauthorized("token expired") from e
    except jwt.MissingRequiredClaimError as e:
        raise Unauthorized(f"invalid token: {e}") from e
    except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as e:
        raise Unauthorized(f"invalid token: {e}") from e
    except jwt.PyJWTError as e:
        raise Unauthorized("invalid token") from e
    problem = _claims_problem(claims)
    if problem:
        raise Unauthorized(f"invalid token: {problem}")
    return claims
