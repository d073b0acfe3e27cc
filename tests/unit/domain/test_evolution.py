"""Drift on ingest (evolve / freeze / discard_columns), merging files, rollback, read plans."""

from __future__ import annotations

import pytest

from datalake.domain.compat import ChangeType, check
from datalake.domain.evolution import (
    common_type,
    evolve,
    merge_observed,
    read_plan,
    rollback_changes,
    validate_policy,
)
from datalake.domain.schema import Schema, SchemaField
from datalake.errors import InvalidInput, SchemaMismatch


def F(id_: int, name: str, type_: str = "long", nullable: bool = True) -> SchemaField:
    return SchemaField(id=id_, name=name, type=type_, nullable=nullable)


def S(*fields: SchemaField) -> Schema:
    return Schema(fields=fields)


def observed(*cols: tuple[str, str]) -> Schema:
    return Schema.of(cols)


# The table dropped a column with id 3 once, so its high-water mark is 4.
TABLE = S(
    F(1, "id", "long", nullable=False),
    F(2, "qty", "int"),
    F(4, "price", "decimal(10,2)"),
)
LAST_ID = 4


# --- evolve -------------------------------------------------------------------------------


def test_evolve_adds_unknown_columns_as_optional_with_fresh_ids() -> None:
    r = evolve(
        TABLE,
        observed(
            ("id", "long"),
            ("qty", "int"),
            ("price", "decimal(10,2)"),
            ("Note", "string"),
            ("flag", "boolean"),
        ),
        "evolve",
        LAST_ID,
    )
    assert [(f.id, f.name, f.type, f.nullable) for f in r.schema.fields[3:]] == [
        (5, "Note", "string", True),
        (6, "flag", "boolean", True),
    ]
    assert [c.to_json() for c in r.changes] == [
        {"type": "ADD_COLUMN", "column": "Note", "to": "string", "breaking": False},
        {"type": "ADD_COLUMN", "column": "flag", "to": "boolean", "breaking": False},
    ]
    assert r.last_column_id == 6 and r.changed
    assert r.unexpected == ["Note", "flag"] and r.mismatch == [] and r.discarded == []
    assert check("BACKWARD", [TABLE], r.schema) == []


def test_evolve_applies_safe_promotions() -> None:
    r = evolve(
        TABLE,
        observed(("id", "long"), ("qty", "long"), ("price", "decimal(14,2)")),
        "evolve",
        LAST_ID,
    )
    assert [f.type for f in r.schema] == ["long", "long", "decimal(14,2)"]
    assert [(c.type, c.column, c.from_, c.to) for c in r.changes] == [
        (ChangeType.CHANGE_TYPE, "qty", "int", "long"),
        (ChangeType.CHANGE_TYPE, "price", "decimal(10,2)", "decimal(14,2)"),
    ]
    assert check("BACKWARD", [TABLE], r.schema) == []


@pytest.mark.parametrize(
    ("table_type", "seen_type"),
    [
        ("long", "int"),  # never narrow
        ("double", "float"),
        ("decimal(10,2)", "decimal(8,2)"),
        ("long", "string"),  # incompatible: keep the table type; records convert or reject
        ("int", "double"),
        ("decimal(10,2)", "decimal(12,4)"),  # scale change is not a promotion
        ("date", "timestamp"),
    ],
)
def test_evolve_never_narrows_nor_changes_incompatibly(table_type: str, seen_type: str) -> None:
    table = S(F(1, "v", table_type))
    r = evolve(table, observed(("v", seen_type)), "evolve", 1)
    assert r.schema == table
    assert r.changes == [] and not r.changed


def test_missing_columns_stay_and_required_ones_become_optional() -> None:
    r = evolve(TABLE, observed(("qty", "int")), "evolve", LAST_ID)
    assert [(f.name, f.nullable) for f in r.schema] == [
        ("id", True),
        ("qty", True),
        ("price", True),
    ]
    assert [(c.type, c.column, c.from_, c.to) for c in r.changes] == [
        (ChangeType.CHANGE_NULLABILITY, "id", "required", "optional")
    ]
    assert r.missing == ["id", "price"]


def test_names_match_case_insensitively() -> None:
    r = evolve(
        TABLE,
        observed(("ID", "long"), ("Qty", "int"), ("PRICE", "decimal(10,2)")),
        "evolve",
        LAST_ID,
    )
    assert r.schema == TABLE and r.changes == [] and r.unexpected == []


def test_evolve_within_a_mode_skips_what_breaks_it() -> None:
    seen = observed(("qty", "long"), ("extra", "string"))
    r = evolve(TABLE, seen, "evolve", LAST_ID, mode="FULL")
    assert [c.kind for c in r.changes] == ["add_optional"]
    assert sorted(c.kind for c in r.skipped) == ["make_optional", "promote"]
    assert r.schema.field("qty").type == "int" and r.schema.field("id").nullable is False
    assert check("FULL", [TABLE], r.schema) == []
    assert evolve(TABLE, seen, "evolve", LAST_ID, mode="NONE").skipped == []


def test_freeze_keeps_schema_and_lists_differing_columns() -> None:
    r = evolve(
        TABLE, observed(("id", "long"), ("qty", "long"), ("extra", "string")), "freeze", LAST_ID
    )
    assert r.schema == TABLE and r.changes == []
    assert r.mismatch == ["extra", "price"]
    assert r.unexpected == ["extra"] and r.missing == ["price"]
    with pytest.raises(SchemaMismatch, match="frozen") as info:
        r.raise_for_mismatch()
    assert info.value.details == {"unexpected": ["extra"], "missing": ["price"]}


def test_freeze_with_the_same_columns_passes_whatever_the_types() -> None:
    r = evolve(
        TABLE, observed(("ID", "string"), ("qty", "long"), ("price", "double")), "freeze", LAST_ID
    )
    assert r.mismatch == [] and r.schema == TABLE
    r.raise_for_mismatch()


def test_discard_columns_drops_unknown_and_keeps_schema() -> None:
    r = evolve(
        TABLE,
        observed(("id", "long"), ("qty", "long"), ("x", "int"), ("Y", "string")),
        "discard_columns",
        LAST_ID,
    )
    assert r.schema == TABLE and r.changes == []
    assert r.discarded == ["x", "Y"] and r.mismatch == []
    r.raise_for_mismatch()


@pytest.mark.parametrize("policy", ["evolve", "freeze", "discard_columns"])
def test_an_empty_table_adopts_the_first_files_columns(policy: str) -> None:
    seen = Schema.of([("a", "long", False), ("b", "string")])
    r = evolve(Schema(), seen, policy, 0)
    assert [(f.id, f.name, f.type, f.nullable) for f in r.schema] == [
        (1, "a", "long", True),
        (2, "b", "string", True),
    ]
    assert [c.kind for c in r.changes] == ["add_optional", "add_optional"]


def test_policies_validate() -> None:
    assert validate_policy(None) == "evolve"
    assert validate_policy("Discard-Columns") == "discard_columns"
    with pytest.raises(InvalidInput):
        validate_policy("merge")
    with pytest.raises(InvalidInput):
        evolve(TABLE, TABLE, "append", LAST_ID)
    with pytest.raises(InvalidInput):
        evolve(TABLE, TABLE, "evolve", LAST_ID, mode="SOMETIMES")


# --- merge_observed ---------------------------------------------------------------------------


def test_merge_unions_files_and_widens_types() -> None:
    files = [
        Schema.of([("id", "int", False), ("amount", "int", False), ("city", "string", False)]),
        Schema.of([("ID", "long", False), ("amount", "double", False), ("zip", "string", False)]),
        Schema.of([("id", "int", False), ("amount", "long", False), ("city", "long", False)]),
    ]
    merged = merge_observed(files)
    assert [(f.id, f.name, f.type, f.nullable) for f in merged] == [
        (1, "id", "long", False),
        (2, "amount", "double", False),
        (3, "city", "string", True),  # absent from file 2
        (4, "zip", "string", True),
    ]


def test_one_job_yields_one_version_whatever_its_files() -> None:
    files = [
        observed(("id", "long"), ("a", "int")),
        observed(("id", "long"), ("a", "long"), ("b", "string")),
    ]
    table = S(F(1, "id", "long", nullable=False), F(2, "a", "int"))
    r = evolve(table, merge_observed(files), "evolve", 2)
    assert [(f.id, f.name, f.type) for f in r.schema] == [
        (1, "id", "long"),
        (2, "a", "long"),
        (3, "b", "string"),
    ]
    assert sorted(c.kind for c in r.changes) == ["add_optional", "promote"]


def test_merge_of_nothing_is_empty() -> None:
    assert merge_observed([]) == Schema()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("int", "int", "int"),
        ("int", "long", "long"),
        ("double", "float", "double"),
        ("long", "double", "double"),
        ("decimal(10,2)", "decimal(12,2)", "decimal(12,2)"),
        ("decimal(10,2)", "decimal(8,4)", "decimal(12,4)"),
        ("long", "decimal(5,2)", "decimal(21,2)"),
        ("decimal(5,2)", "int", "decimal(12,2)"),
        ("decimal(38,10)", "long", "decimal(38,10)"),
        ("decimal(38,30)", "long", "string"),
        ("decimal(5,2)", "float", "double"),
        ("date", "timestamp", "timestamp"),
        ("timestamptz", "date", "timestamptz"),
        ("timestamp", "timestamptz", "string"),
        ("long", "string", "string"),
        ("boolean", "int", "string"),
        ("binary", "uuid", "string"),
    ],
)
def test_common_type(a: str, b: str, expected: str) -> None:
    assert common_type(a, b) == expected
    assert common_type(b, a) == expected


# --- rollback and reading across versions -------------------------------------------------


def test_rollback_is_compare_to_the_older_version() -> None:
    v1 = S(F(1, "id", nullable=False), F(2, "qty", "int"), F(3, "note", "string"))
    v2 = S(F(1, "id", nullable=False), F(2, "quantity", "long"), F(4, "extra", "string"))
    changes = rollback_changes(v2, v1)
    assert [(c.type, c.column, c.field_id) for c in changes] == [
        (ChangeType.RENAME_COLUMN, "quantity", 2),
        (ChangeType.CHANGE_TYPE, "qty", 2),
        (ChangeType.DROP_COLUMN, "extra", 4),
        (ChangeType.ADD_COLUMN, "note", 3),  # comes back with its original id
    ]
    # narrowing long -> int back: old files written under v2 may not fit, so BACKWARD refuses
    assert [v.change.kind for v in check("BACKWARD", [v1, v2], v1)] == ["narrow"]


def test_read_plan_follows_ids() -> None:
    written = S(F(1, "id", "int", nullable=False), F(2, "qty", "int"), F(3, "gone", "string"))
    current = S(
        F(2, "quantity", "long"),
        F(1, "id", "long", nullable=False),
        F(5, "new"),
        F(6, "price", "decimal(9,2)"),
    )
    written = S(*written.fields, F(6, "price", "double"))
    plan = read_plan(written, current)
    assert [(c.name, c.source, c.action) for c in plan] == [
        ("quantity", "qty", "promote"),
        ("id", "id", "promote"),
        ("new", None, "null"),
        ("price", "price", "cast"),
    ]
    assert plan[0].source_type == "int" and plan[0].type == "long"
    assert [c.action for c in read_plan(current, current)] == ["read"] * 4
