"""Which objects under a source location are data: the one rule for uploads and listings.

Writers of data folders leave objects beside the data that are not records: Spark and
Hadoop's ``_SUCCESS``, Databricks' ``_committed_*`` and ``_started_*``, Hadoop's ``.crc``
checksums, the zero-byte "folder" keys consoles create (``subdir/``), and empty objects.
A prefix ingest skips them, and so does the upload trigger, by :func:`marker_reason`.
A source may also name glob patterns (``*.tmp``) whose uploads start no job:
:func:`ignored_by`.

Pure: no I/O, no third-party imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from datalake.domain.limits import text_problem
from datalake.errors import InvalidInput

__all__ = [
    "MAX_IGNORE_PATTERNS",
    "MAX_PATTERN_LENGTH",
    "ignored_by",
    "is_data_object",
    "marker_reason",
    "parse_ignore_patterns",
]

#: Names written beside data by Spark, Hadoop and Databricks jobs.
_MARKER_NAMES = frozenset({"_SUCCESS"})
_MARKER_PREFIXES = ("_committed_", "_started_")
_MARKER_SUFFIXES = (".crc",)
#: A source's ignore patterns: a few globs, each of a bounded length.
MAX_IGNORE_PATTERNS = 100
MAX_PATTERN_LENGTH = 1024


def marker_reason(key: str, size: int | None = None) -> str | None:
    """Why the object at ``key`` (of ``size`` bytes, when known) holds no records, or
    ``None`` when it is data.

    Parameters
    ----------
    key:
        The object's key.
    size:
        Its size in bytes; ``None`` when the caller does not know it.
    """
    if key.endswith("/"):
        return "a folder key"
    name = key.rsplit("/", 1)[-1]
    if name in _MARKER_NAMES or name.startswith(_MARKER_PREFIXES):
        return f"a job marker ({name})"
    if name.endswith(_MARKER_SUFFIXES):
        return f"a checksum file ({name})"
    if size == 0:
        return "an empty object"
    return None


def is_data_object(key: str, size: int | None = None) -> bool:
    """Whether the object may hold records (:func:`marker_reason` finds nothing)."""
    return marker_reason(key, size) is None


def ignored_by(key: str, prefix: str, patterns: Sequence[str] | None) -> str | None:
    """The first of a source's ignore ``patterns`` that ``key`` matches, or ``None``.

    A pattern is a shell glob (``*``, ``?``, ``[...]``, case-sensitive as S3 keys are).
    It matches an object when it matches the object's name (the key's last segment), or
    its key below the source's ``prefix`` (so ``tmp/*`` ignores a sub-folder; ``*``
    crosses ``/`` there).
    """
    name = key.rsplit("/", 1)[-1]
    below = key.removeprefix(prefix)
    for pattern in patterns or ():
        if fnmatchcase(name, pattern) or fnmatchcase(below, pattern):
            return pattern
    return None


def parse_ignore_patterns(value: Any) -> list[str]:
    """A source's ``ignore`` as it is stored: a list of glob patterns (``None`` = none).

    Raises
    ------
    InvalidInput
        When ``value`` is not a list of at most :data:`MAX_IGNORE_PATTERNS` non-empty
        strings of plain text, each at most :data:`MAX_PATTERN_LENGTH` characters.
    """
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidInput("ignore must be a list of glob patterns, e.g. [\"*.tmp\"]")
    if len(value) > MAX_IGNORE_PATTERNS:
        raise InvalidInput(f"ignore takes at most {MAX_IGNORE_PATTERNS} patterns")
    patterns: list[str] = []
    for p in value:
        if not isinstance(p, str) or not p.strip():
            raise InvalidInput(f"ignore patterns are non-empty strings, not {p!r}")
        if len(p) > MAX_PATTERN_LENGTH:
            raise InvalidInput(f"an ignore pattern is at most {MAX_PATTERN_LENGTH} characters")
        problem = text_problem(p)
        if problem:
            raise InvalidInput(f"ignore pattern {p!r} {problem}")
        if p not in patterns:
            patterns.append(p)
    return patterns
