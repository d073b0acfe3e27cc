"""Merging per-file column statistics into a partition's roll-up."""

from __future__ import annotations

from datalake.domain.stats import merge_stats


def test_min_max_and_null_counts_combine() -> None:
    merged = merge_stats(
        {},
        [
            {"id": {"min": 3, "max": 9, "null_count": 1}},
            {"id": {"min": 1, "max": 5, "null_count": 2}},
        ],
    )
    assert merged == {"id": {"min": 1, "max": 9, "null_count": 3}}


def test_current_is_not_modified_and_missing_values_leave_the_other_side() -> None:
    current = {"v": {"min": "b", "max": "c", "null_count": 0}}
    merged = merge_stats(current, [{"v": {"min": None, "max": "z", "null_count": None}}])
    assert merged == {"v": {"min": "b", "max": "z", "null_count": 0}}
    assert current == {"v": {"min": "b", "max": "c", "null_count": 0}}


def test_incomparable_values_take_the_newer_and_junk_is_ignored() -> None:
    merged = merge_stats(
        {"x": {"min": 1, "max": 2, "null_count": 0}},
        [{"x": {"min": "a", "max": "b"}, "y": "not stats"}, None],
    )
    assert merged == {"x": {"min": "a", "max": "b", "null_count": 0}}


def test_new_columns_start_from_nothing() -> None:
    assert merge_stats(None, [{"n": {"min": 0, "max": 0}}]) == {
        "n": {"min": 0, "max": 0, "null_count": 0}
    }
