"""Target file sizes: the arithmetic of a table's target and of what counts as small."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datalake.domain.formats import (
    MAX_TARGET_FILE_SIZE_MB,
    MIN_TARGET_FILE_SIZE_MB,
    check_target_file_size_mb,
)
from datalake.domain.vocabulary import DEFAULT_TARGET_FILE_SIZE_MB

#: A committed file smaller than this fraction of the target size is a compaction candidate.
SMALL_FILE_FRACTION = 0.5
#: The range a target size (in MB) may take: a table format's (one definition).
MIN_TARGET_MB, MAX_TARGET_MB = MIN_TARGET_FILE_SIZE_MB, MAX_TARGET_FILE_SIZE_MB


def validate_target_mb(value: Any) -> float | None:
    """Validate an optional ``target_file_size_mb`` override (a table format's range).

    Raises
    ------
    InvalidInput
        When ``value`` is not None and not a number in range (booleans are refused).
    """
    return None if value is None else float(check_target_file_size_mb(value))


def target_mb(table_format: Mapping[str, Any], override_mb: float | None = None) -> float:
    """A table's target file size in MB: the override, else its format's, else the default."""
    if override_mb is not None:
        return float(override_mb)
    return float(table_format.get("target_file_size_mb", DEFAULT_TARGET_FILE_SIZE_MB))


def target_bytes(table_format: Mapping[str, Any], override_mb: float | None = None) -> int:
    """A table's target file size in bytes (see :func:`target_mb`)."""
    return int(target_mb(table_format, override_mb) * 2**20)


def small_file_bytes(target: int) -> int:
    """Files below this many bytes are small for a target of ``target`` bytes."""
    return int(target * SMALL_FILE_FRACTION)
