"""Size limits of what callers may name and send: the catalog's columns and S3's keys.

One place, so the API's validation, the services and the catalog's column widths
cannot drift apart.
"""

from __future__ import annotations

import re

#: Catalog ids are UUID strings.
ID_MAX = 36
#: Names, namespaces, buckets, actors: the catalog's ``String(255)`` columns.
NAME_MAX = 255
#: S3 bucket names (3 to 63 characters).
BUCKET_MAX = 63
#: S3 keys and prefixes are at most 1,024 bytes of UTF-8.
KEY_MAX_BYTES = 1024
#: A partition's Hive path (``a=1/b=2``): the catalog's ``String(1024)``, and room in an
#: S3 key for the table prefix and the file name.
PARTITION_PATH_MAX = 768
#: Free text (descriptions) returned on every list.
DESCRIPTION_MAX = 4096
#: Correlation ids (the audit trail's ``String(128)``) and idempotency keys from headers.
CORRELATION_ID_MAX = 128
HEADER_VALUE_MAX = 200
#: Offsets of list pages: far beyond any real table, far inside a 64-bit integer.
MAX_OFFSET = 1_000_000_000
#: Integers in JSON bodies must fit the catalog's 64-bit columns.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Request bodies and their JSON nesting.
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
#: Sources and partition values listed in one request.
MAX_LIST_ITEMS = 10_000


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_problem(name: str) -> str | None:
    """Why ``name`` is not a valid S3 bucket name (S3's naming rules), or ``None``."""
    if not _BUCKET.match(name) or ".." in name or "/" in name:
        return (
            "must be an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be an S3 key or prefix, or ``None``."""
    problem = text_problem(key)
    if problem:
        return problem
    if len(key.encode("utf-8")) > KEY_MAX_BYTES:
        return f"must be at most {KEY_MAX_BYTES} bytes of UTF-8"
    return None


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as catalog text, or ``None`` when it can.

    Postgres text holds neither NUL nor lone UTF-16 surrogates (which JSON's ``\\ud800``
    escapes can produce); refusing them at the edge keeps a bad string from failing a
    statement and poisoning a pooled connection.
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None
