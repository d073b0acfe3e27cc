"""Bearer JWT authentication and role-based access: reader < writer < admin."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from threading import Lock

from datalake.config import get_settings
from datalake.errors import Forbidden, Unauthorized
from datalake.tokens import ROLE_RANK, make_token, token_roles, verify_token

__all__ = ["ROLE_RANK", "Principal", "authenticate", "make_token"]

#: Tokens verified recently, and for how long their verdict stands.
CACHE_SIZE = 1024
#: A verified token is checked again after this long even if it expires later, so a key
#: withdrawn from the JWKS (or a rotated secret) stops its tokens within minutes.
CACHE_SECONDS = 300.0


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
    token = authorization.split(" ", 1)[1].strip()
    settings = get_settings()
    now = time.time()
    with _lock:
        hit = _verified.get(token)
    # A hit stands for the same settings (keys, issuer, audience) only; a token verified
    # before stays valid until it expires (nbf and iat were in the past then);
    # past its entry's time it is verified afresh, and an expired one refused by that.
    if hit is not None and hit[0] is settings and now < hit[1]:
        return hit[2]
    claims = verify_token(token)
    # verify_token guarantees a string subject and known role names.
    who = Principal(subject=claims["sub"], roles=token_roles(claims))
    expires = float(claims["exp"])
    with _lock:
        _verified[token] = (settings, min(expires, now + CACHE_SECONDS), who)
        while len(_verified) > CACHE_SIZE:
            _verified.popitem(last=False)
    return who


# Verifying a token (HMAC or RSA over its bytes, then the claims) is the largest pure-CPU
# cost of a cheap read; a client sends the same token with every request. Successes only.
_verified: OrderedDict[str, tuple[object, float, Principal]] = OrderedDict()
_lock = Lock()
