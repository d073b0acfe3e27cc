"""merge_stats: a partition's column statistics after files are added to it."""

from __future__ import annotations

from typing import Any

from datalake.domain.stats import merge_stats


def test_min_max_and_null_counts_merge_across_files() -> None:
    current = {"a": {"min": 3, "max": 5, "null_count": 1}}
    new = [
        {"a": {"min": 1, "max": 4, "null_count": 2}, "b": {"min": "x", "max": "y"}},
        {"a": {"min": 2, "max": 9, "null_count": 0}},
    ]
    assert merge_stats(current, new) == {
        "a": {"min": 1, "max": 9, "null_count": 3},
        "b": {"min": "x", "max": "y", "null_count": 0},
    }


def test_the_current_statistics_are_not_modified() -> None:
    current = {"a": {"min": 3, "max": 5, "null_count": 1}}
    merge_stats(current, [{"a": {"min": 0, "max": 10, "null_count": 4}}])
    assert current == {"a": {"min": 3, "max": 5, "null_count": 1}}


def test_missing_values_keep_the_known_bound() -> None:
    out = merge_stats({}, [{"a": {"min": None, "max": 2}}, {"a": {"min": 1, "max": None}}])
    assert out == {"a": {"min": 1, "max": 2, "null_count": 0}}


def test_values_that_cannot_be_ordered_take_the_newer_one() -> None:
    # A column whose type changed between files: its bounds restart from the newer file.
    current = {"a": {"min": 1, "max": 2, "null_count": 0}}
    out = merge_stats(current, [{"a": {"min": "x", "max": "z"}}])
    assert out["a"]["min"] == "x" and out["a"]["max"] == "z"


def test_entries_that_are_not_objects_are_ignored() -> None:
    new: list[dict[str, Any]] = [{"a": 5, "b": {"min": 1, "max": 1, "null_count": 0}}]
    assert merge_stats({}, new) == {"b": {"min": 1, "max": 1, "null_count": 0}}
    assert merge_stats(None, [None]) == {}  # type: ignore[arg-type,list-item]


def test_new_columns_start_from_nothing() -> None:
    assert merge_stats(None, [{"n": {"min": 0, "max": 0}}]) == {
        "n": {"min": 0, "max": 0, "null_count": 0}
    }
