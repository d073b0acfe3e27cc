"""Bearer JWT authentication and role-based access: reader < writer < admin."""

from __future__ import annotations

from dataclasses import dataclass, field

from datalake.errors import Forbidden, Unauthorized
from datalake.tokens import ROLE_RANK, make_token, token_roles, verify_token

__all__ = ["ROLE_RANK", "Principal", "authenticate", "make_token"]


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


def authenticate(authorization: str | None) -> Principal:
    """Validate an ``Authorization: Bearer <jwt>`` header.

    Raises
    ------
    Unauthorized
        When the header is missing or the token is invalid or expired.
    """
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token")
    claims = verify_token(authorization.split(" ", 1)[1].strip())
    # verify_token guarantees a string subject and known role names.
    return Principal(subject=claims["sub"], roles=token_roles(claims))
