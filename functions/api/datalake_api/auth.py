"""Bearer JWT authentication (HS256) and role-based access: reader < writer < admin."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt

from datalake.config import get_settings
from datalake.errors import Forbidden, Unauthorized

ROLE_RANK = {"reader": 1, "writer": 2, "admin": 3}


@dataclass(frozen=True)
class Principal:
    """The caller, as its token says."""

    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def rank(self) -> int:
        return max((ROLE_RANK.get(r, 0) for r in self.roles), default=0)

    def require(self, role: str) -> None:
        """Raise Forbidden unless the caller holds ``role`` or a higher one."""
        if self.rank < ROLE_RANK[role]:
            raise Forbidden(f"this operation needs the {role!r} role")


def make_token(
    subject: str, roles: list[str], *, ttl_seconds: int = 30 * 86400, secret: str | None = None
) -> str:
    """Sign a token for ``subject`` with ``roles`` (the CLI and tests use it)."""
    settings = get_settings()
    now = int(time.time())
    claims = {"sub": subject, "roles": roles, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret or settings.jwt_secret, algorithm=settings.jwt_algorithm)


def authenticate(authorization: str | None) -> Principal:
    """Validate an ``Authorization: Bearer <jwt>`` header.

    Raises
    ------
    Unauthorized
        When the header is missing or the token is invalid or expired.
    """
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token")
    token = authorization.split(" ", 1)[1].strip()
    settings = get_settings()
    try:
        claims = jwt.decode(token, settings.jwt_secret, algorithms=[settings.jwt_algorithm])
    except jwt.ExpiredSignatureError as e:
        raise Unauthorized("token expired") from e
    except jwt.PyJWTError as e:
        raise Unauthorized("invalid token") from e
    roles = claims.get("roles") or []
    if isinstance(roles, str):
        roles = [roles]
    return Principal(subject=str(claims.get("sub", "unknown")), roles=frozenset(map(str, roles)))
