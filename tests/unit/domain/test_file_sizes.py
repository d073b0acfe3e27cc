"""Target file sizes: validation of overrides and the byte arithmetic."""

from __future__ import annotations

import pytest

from datalake.domain.file_sizes import (
    MAX_TARGET_MB,
    MIN_TARGET_MB,
    small_file_bytes,
    target_bytes,
    target_mb,
    validate_target_mb,
)
from datalake.domain.vocabulary import DEFAULT_TARGET_FILE_SIZE_MB
from datalake.errors import InvalidInput


@pytest.mark.parametrize("value", [MIN_TARGET_MB, 64, 0.5 + MIN_TARGET_MB, MAX_TARGET_MB])
def test_overrides_in_range_are_floats(value: float) -> None:
    assert validate_target_mb(value) == float(value)


def test_no_override_is_none() -> None:
    assert validate_target_mb(None) is None


@pytest.mark.parametrize("value", [0, MAX_TARGET_MB + 1, True, "64", [64]])
def test_bad_overrides_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        validate_target_mb(value)


def test_the_override_wins_over_the_format_and_the_default_is_the_vocabulary_s() -> None:
    assert target_mb({"target_file_size_mb": 32}, 8) == 8.0
    assert target_mb({"target_file_size_mb": 32}) == 32.0
    assert target_mb({}) == float(DEFAULT_TARGET_FILE_SIZE_MB)
    assert target_bytes({"target_file_size_mb": "1.5"}) == 3 * 2**19


def test_small_is_half_the_target() -> None:
    assert small_file_bytes(2**20) == 2**19
    assert small_file_bytes(3) == 1
