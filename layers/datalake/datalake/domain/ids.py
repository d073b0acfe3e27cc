"""Catalog ids as callers write them: whole, or a unique prefix (``6408c5f2``).

The CLI's progress lines and the demo print the first 8 characters of an id; every route
and command that takes an id accepts such a prefix when it names one row. Pure.
"""

from __future__ import annotations

import re

from datalake.domain.limits import ID_MAX
from datalake.errors import NotFound

__all__ = ["MIN_PREFIX", "id_prefix"]

#: The shortest prefix looked up: 8 hex digits, what the CLI and the demo print.
MIN_PREFIX = 8
_HEXISH = re.compile(r"^[0-9a-fA-F-]+$")


def id_prefix(ref: str, kind: str) -> str | None:
    """The prefix to look ``ref`` up by, or ``None`` when ``ref`` is taken as it is.

    A whole id (36 characters), or anything that is not hex digits and dashes, is used
    as given (an unknown one is then a plain 404). A shorter run of hex digits is a
    prefix, lowercased as ids are stored.

    Parameters
    ----------
    ref:
        What the caller wrote.
    kind:
        What it names (``"job"``, ``"table"``, ...), for the message.

    Raises
    ------
    NotFound
        When ``ref`` is a prefix of fewer than :data:`MIN_PREFIX` hex digits.
    """
    if len(ref) >= ID_MAX or not _HEXISH.match(ref):
        return None
    if sum(c != "-" for c in ref) < MIN_PREFIX:
        raise NotFound(
            f"no {kind} {ref}: an id prefix needs at least {MIN_PREFIX} hex characters "
            "(or give the whole id)"
        )
    return ref.lower()
