"""API tokens: JWTs whose roles claim grants reader, writer or admin.

Two ways to check them: HS256 with the stack's own secret (``DATALAKE_JWT_SECRET``, from
Secrets Manager on AWS), or RS256 against a JWKS URL (``DATALAKE_JWT_JWKS_URL``; an
Amazon Cognito user pool's ``.well-known/jwks.json`` works, with
``DATALAKE_JWT_ROLES_CLAIM=cognito:groups``).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import jwt

from datalake.config import LOCAL_JWT_SECRET, get_settings
from datalake.domain.limits import NAME_MAX, text_problem
from datalake.errors import TransientError, Unauthorized

#: HS256 wants a key at least as long as its 256-bit output (RFC 7518, 3.2).
MIN_SECRET_LENGTH = 32
#: The roles a token may grant, weakest first; each includes the ones before it.
ROLE_RANK = {"reader": 1, "writer": 2, "admin": 3}


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
    name = get_settings().jwt_roles_claim
    roles = claims.get(name, [])
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        return f"{name!r} must be a list of role names"
    unknown = sorted(set(roles) - set(ROLE_RANK))
    if unknown:
        return f"{name!r} holds unknown roles {unknown}; known: {list(ROLE_RANK)}"
    return None


def token_roles(claims: dict[str, Any]) -> frozenset[str]:
    """The roles verified claims grant (see :func:`verify_token`)."""
    roles = claims.get(get_settings().jwt_roles_claim, [])
    return frozenset([roles] if isinstance(roles, str) else roles)


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    # Keys are cached per container; an unknown kid refetches (key rotation).
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)


def _verification_key(token: str) -> tuple[Any, list[str]]:
    settings = get_settings()
    if not settings.jwt_jwks_url:
        return signing_secret(), [settings.jwt_algorithm]
    try:
        return _jwks_client(settings.jwt_jwks_url).get_signing_key_from_jwt(token).key, ["RS256"]
    except jwt.PyJWKClientConnectionError as e:
        raise TransientError("cannot fetch the token signing keys (JWKS); retry shortly") from e
    except (jwt.PyJWKClientError, jwt.PyJWTError) as e:
        raise Unauthorized(f"invalid token: {e}") from e


def verify_token(token: str) -> dict[str, Any]:
    """Return a token's claims.

    Raises
    ------
    Unauthorized
        When the token is malformed, badly signed or expired.
    """
    settings = get_settings()
    key, algorithms = _verification_key(token)
    required = ["exp", "sub"]
    required += ["iss"] if settings.jwt_issuer else []
    required += ["aud"] if settings.jwt_audience else []
    try:
        claims = dict(
            jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=settings.jwt_issuer or None,
                audience=settings.jwt_audience or None,
                options={"require": required, "verify_aud": bool(settings.jwt_audience)},
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
