"""Compatibility checks that know which versions hold data (``written``)."""

from __future__ import annotations

from datalake.domain.compat import check
from datalake.domain.schema import Schema, SchemaField


def schema(**types: str) -> Schema:
    return Schema(fields=tuple(
        SchemaField(id=i, name=name, type=t, nullable=True)
        for i, (name, t) in enumerate(types.items(), start=1)
    ))


def against(mode: str, history: list[Schema], new: Schema, written: set[int] | None) -> list[
    tuple[str, int]
]:
    return [(v.direction, v.against_version) for v in check(mode, history, new, written=written)]


def test_a_table_without_data_is_not_held_to_reading_old_data() -> None:
    v1, fixed = schema(t="string"), schema(t="timestamp")
    assert against("BACKWARD", [v1], fixed, written=set()) == []
    assert against("BACKWARD_TRANSITIVE", [v1], fixed, written=set()) == []
    # Unknown (None) is every version, as before; data of version 1 is protected.
    assert against("BACKWARD", [v1], fixed, written=None) == [("BACKWARD", 1)]
    assert against("BACKWARD", [v1], fixed, written={1}) == [("BACKWARD", 1)]


def test_forward_still_protects_the_readers_of_old_versions() -> None:
    v1, fixed = schema(t="string"), schema(t="timestamp")
    assert against("FULL", [v1], fixed, written=set()) == [("FORWARD", 1)]
    assert against("FORWARD", [v1], fixed, written=set()) == [("FORWARD", 1)]


def test_backward_checks_the_latest_version_that_holds_data() -> None:
    # Version 1 holds int data; version 2 (long) was never written with.
    v1, v2 = schema(a="int"), schema(a="long")
    back = schema(a="int")
    assert against("BACKWARD", [v1, v2], back, written={1}) == [], "int data reads as int"
    assert against("BACKWARD", [v1, v2], back, written={1, 2}) == [("BACKWARD", 2)]
    assert against("BACKWARD", [v1, v2], schema(a="string"), written={1}) == [("BACKWARD", 1)]


def test_transitive_backward_checks_every_version_that_holds_data() -> None:
    v1, v2, v3 = schema(a="int"), schema(a="string"), schema(a="long")
    new = schema(a="double")
    assert against("BACKWARD_TRANSITIVE", [v1, v2, v3], new, written={1, 3}) == [
        ("BACKWARD", 1),
        ("BACKWARD", 3),
    ]
    assert against("FULL_TRANSITIVE", [v1, v2, v3], new, written={3}) == [
        ("FORWARD", 1),
        ("FORWARD", 2),
        ("BACKWARD", 3),
        ("FORWARD", 3),
    ]
