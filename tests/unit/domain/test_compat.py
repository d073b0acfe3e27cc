"""compare, compatibility, check, modes and assign_ids."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datalake.domain.compat import (
    MODES,
    ChangeType,
    assign_ids,
    check,
    compare,
    compatibility,
    ensure_compatible,
    validate_mode,
)
from datalake.domain.schema import Schema, SchemaField
from datalake.errors import IncompatibleSchema, InvalidInput


def F(id_: int, name: str, type_: str = "long", nullable: bool = True) -> SchemaField:
    return SchemaField(id=id_, name=name, type=type_, nullable=nullable)


def S(*fields: SchemaField) -> Schema:
    return Schema(fields=fields)


# --- compare ---------------------------------------------------------------------------


def test_identical_schemas_have_no_changes() -> None:
    s = S(F(1, "id", nullable=False), F(2, "x", "string"))
    assert compare(s, s) == []
    assert compatibility(s, s) == {"BACKWARD": True, "FORWARD": True, "FULL": True}


def test_rename_is_matched_by_id_not_drop_and_add() -> None:
    changes = compare(S(F(1, "a")), S(F(1, "b")))
    assert [c.to_json() for c in changes] == [
        {"type": "RENAME_COLUMN", "column": "a", "from": "a", "to": "b", "breaking": False}
    ]


def test_case_only_rename_is_reported() -> None:
    assert [c.type for c in compare(S(F(1, "a")), S(F(1, "A")))] == [ChangeType.RENAME_COLUMN]


def test_one_change_per_aspect_of_a_column() -> None:
    old = S(F(1, "a", "int", nullable=False))
    new = S(F(1, "b", "long", nullable=True))
    changes = compare(old, new)
    assert [(c.type, c.column, c.from_, c.to) for c in changes] == [
        (ChangeType.RENAME_COLUMN, "a", "a", "b"),
        (ChangeType.CHANGE_TYPE, "b", "int", "long"),
        (ChangeType.CHANGE_NULLABILITY, "b", "required", "optional"),
    ]
    assert compatibility(old, new) == {"BACKWARD": True, "FORWARD": False, "FULL": False}


def test_same_name_new_id_is_drop_and_add() -> None:
    changes = compare(S(F(1, "a")), S(F(2, "a")))
    assert [(c.type, c.field_id) for c in changes] == [
        (ChangeType.DROP_COLUMN, 1),
        (ChangeType.ADD_COLUMN, 2),
    ]


def test_to_json_shape_and_mode_relative_breaking() -> None:
    (add,) = compare(S(), S(F(5, "n", "date", nullable=False)))
    assert add.to_json("BACKWARD") == {
        "type": "ADD_COLUMN",
        "column": "n",
        "to": "date",
        "breaking": True,
    }
    assert add.to_json("FORWARD")["breaking"] is False
    assert add.to_json("NONE")["breaking"] is False
    assert add.to_json("FULL_TRANSITIVE")["breaking"] is True
    detail = add.to_json("FORWARD", detail=True)
    assert detail["field_id"] == 5 and detail["kind"] == "add_required"
    assert detail["breaking_backward"] is True and detail["breaking_forward"] is False
    (drop,) = compare(S(F(3, "x", "string")), S())
    assert drop.to_json() == {
        "type": "DROP_COLUMN",
        "column": "x",
        "from": "string",
        "breaking": False,
    }


def test_decimal_changes() -> None:
    def kind(a: str, b: str) -> str:
        return compare(S(F(1, "d", a)), S(F(1, "d", b)))[0].kind

    assert kind("decimal(10,2)", "decimal(12,2)") == "promote"
    assert kind("decimal(12,2)", "decimal(10,2)") == "narrow"
    assert kind("decimal(10,2)", "decimal(12,3)") == "incompatible_type"
    assert kind("int", "double") == "incompatible_type"
    assert kind("timestamp", "timestamptz") == "incompatible_type"


# --- duality: BACKWARD(old, new) == FORWARD(new, old) -------------------------------------

TYPES = ["int", "long", "float", "double", "string", "date", "decimal(9,2)", "decimal(12,2)"]


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    ids = draw(st.lists(st.integers(1, 8), unique=True, max_size=6))
    return Schema(
        fields=tuple(
            SchemaField(
                id=i,
                name=draw(st.sampled_from([f"c{i}", f"col{i}"])),
                type=draw(st.sampled_from(TYPES)),
                nullable=draw(st.booleans()),
            )
            for i in ids
        )
    )


@settings(max_examples=200, deadline=None)
@given(schemas(), schemas())
def test_backward_is_forward_reversed(a: Schema, b: Schema) -> None:
    ab, ba = compatibility(a, b), compatibility(b, a)
    assert ab["BACKWARD"] == ba["FORWARD"]
    assert ab["FORWARD"] == ba["BACKWARD"]
    assert ab["FULL"] == ba["FULL"]
    assert (check("BACKWARD", [a], b) == []) is ab["BACKWARD"]
    assert (check("FULL", [a], b) == []) is ab["FULL"]
    assert check("NONE", [a], b) == []


# --- check and modes ---------------------------------------------------------------------


def test_transitive_catches_what_a_none_mode_history_let_in() -> None:
    v1 = S(F(1, "amount", "long", nullable=False))
    v2 = S(F(1, "amount", "int", nullable=False))  # narrowed while the table was NONE
    v3 = S(F(1, "amount", "int", nullable=True))
    assert check("BACKWARD", [v1, v2], v3) == []
    violations = check("BACKWARD_TRANSITIVE", [v1, v2], v3, versions=[4, 7])
    assert [(v.against_version, v.direction, v.change.kind) for v in violations] == [
        (4, "BACKWARD", "narrow")
    ]
    assert "version 4" in violations[0].message


def test_full_reports_both_directions() -> None:
    violations = check("FULL", [S(F(1, "a", "int"))], S(F(1, "a", "string")))
    assert sorted(v.direction for v in violations) == ["BACKWARD", "FORWARD"]


def test_empty_history_has_nothing_to_break() -> None:
    assert check("FULL_TRANSITIVE", [], S(F(1, "a", nullable=False))) == []


def test_versions_must_match_history() -> None:
    with pytest.raises(InvalidInput):
        check("BACKWARD", [S()], S(), versions=[1, 2])


def test_ensure_compatible_raises_409_with_violations() -> None:
    with pytest.raises(IncompatibleSchema) as info:
        ensure_compatible("BACKWARD", [S(F(1, "a"))], S(F(1, "a"), F(2, "b", nullable=False)))
    assert info.value.status_code == 409
    assert info.value.details[0]["change"] == {
        "type": "ADD_COLUMN",
        "column": "b",
        "to": "long",
        "breaking": True,
    }
    ensure_compatible("FORWARD", [S(F(1, "a"))], S(F(1, "a"), F(2, "b", nullable=False)))


@pytest.mark.parametrize("mode", MODES)
def test_modes_validate(mode: str) -> None:
    assert validate_mode(mode.lower()) == mode


def test_mode_aliases_and_default() -> None:
    assert validate_mode(None) == "BACKWARD"
    assert validate_mode("backward_all") == "BACKWARD_TRANSITIVE"
    assert validate_mode("FULL_ALL") == "FULL_TRANSITIVE"
    assert validate_mode(" forward-transitive ") == "FORWARD_TRANSITIVE"


@pytest.mark.parametrize("mode", ["DISABLED", "SIDEWAYS", "", "BACKWARD_TRANSITIVE_ALL"])
def test_unknown_modes_are_invalid_input(mode: str) -> None:
    with pytest.raises(InvalidInput):
        validate_mode(mode)
    with pytest.raises(InvalidInput):
        check(mode, [S()], S())


# --- assign_ids ---------------------------------------------------------------------------

CURRENT = S(F(1, "id", nullable=False), F(2, "name", "string"), F(4, "amount", "int"))


def test_fields_without_ids_match_by_name_case_insensitively() -> None:
    proposed = {
        "fields": [
            {"name": "amount", "type": "long"},
            {"name": "ID", "type": "long", "nullable": False},
            {"name": "email", "type": "string"},
        ]
    }
    out = assign_ids(CURRENT, proposed, last_column_id=5)
    assert [(f.id, f.name) for f in out] == [(4, "amount"), (1, "ID"), (6, "email")]
    assert [c.kind for c in compare(CURRENT, out)] == [
        "rename",  # id -> ID
        "drop_optional",  # name
        "promote",
        "add_optional",
    ]


def test_explicit_id_is_a_rename() -> None:
    proposed = {
        "fields": [
            {"id": 1, "name": "id", "type": "long", "nullable": False},
            {"id": 2, "name": "full_name", "type": "string"},
            {"name": "amount", "type": "int"},
        ]
    }
    out = assign_ids(CURRENT, proposed, last_column_id=4)
    assert [(f.id, f.name) for f in out] == [(1, "id"), (2, "full_name"), (4, "amount")]
    assert [c.type for c in compare(CURRENT, out)] == [ChangeType.RENAME_COLUMN]


def test_ids_are_never_reused_after_a_drop() -> None:
    # "amount" (id 4) was dropped earlier and id 5 too; re-adding the name gets a fresh id
    current = S(F(1, "id", nullable=False), F(2, "name", "string"))
    out = assign_ids(
        current, {"fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "int"}]}, 5
    )
    assert [(f.id, f.name) for f in out] == [(1, "id"), (6, "amount")]


def test_explicit_id_of_a_dropped_column_is_refused() -> None:
    with pytest.raises(InvalidInput, match="never reused"):
        assign_ids(CURRENT, {"fields": [{"id": 3, "name": "x", "type": "int"}]}, 4)


def test_explicit_new_id_above_high_water_mark_is_kept() -> None:
    out = assign_ids(
        CURRENT,
        {"fields": [{"id": 10, "name": "x", "type": "int"}, {"name": "y", "type": "int"}]},
        4,
    )
    assert [f.id for f in out] == [10, 11]


def test_duplicate_explicit_ids_are_refused() -> None:
    with pytest.raises(InvalidInput, match="twice"):
        assign_ids(
            CURRENT,
            {
                "fields": [
                    {"id": 1, "name": "a", "type": "int"},
                    {"id": 1, "name": "b", "type": "int"},
                ]
            },
            4,
        )


def test_name_claimed_by_an_explicit_id_gets_a_new_id() -> None:
    # id 2 renamed to "amount"; the no-id "name" field cannot take id 2 again
    proposed = {
        "fields": [{"id": 2, "name": "label", "type": "string"}, {"name": "name", "type": "string"}]
    }
    out = assign_ids(CURRENT, proposed, 4)
    assert [(f.id, f.name) for f in out] == [(2, "label"), (5, "name")]


def test_schema_input_ids_are_explicit() -> None:
    out = assign_ids(CURRENT, S(F(2, "renamed", "string"), F(9, "new")), 4)
    assert [(f.id, f.name) for f in out] == [(2, "renamed"), (9, "new")]


def test_a_comparison_keeps_an_explicit_id_absent_from_the_reference() -> None:
    # Comparing is not changing the table: id 3 is simply a column the reference lacks.
    proposed = {
        "fields": [{"id": 3, "name": "x", "type": "int"}, {"name": "name", "type": "string"}]
    }
    out = assign_ids(CURRENT, proposed, 0, refuse_dropped=False)
    assert [(f.id, f.name) for f in out] == [(3, "x"), (2, "name")]
    with pytest.raises(InvalidInput, match="never reused"):
        assign_ids(CURRENT, proposed, 0)


def test_a_comparison_numbers_unmatched_fields_above_both_sides() -> None:
    proposed = {"fields": [{"id": 7, "name": "a", "type": "int"}, {"name": "b", "type": "int"}]}
    out = assign_ids(CURRENT, proposed, 0, refuse_dropped=False)
    assert [(f.id, f.name) for f in out] == [(7, "a"), (8, "b")]


def test_invalid_proposed_schema() -> None:
    with pytest.raises(InvalidInput):
        assign_ids(CURRENT, {"fields": "nope"}, 4)
    with pytest.raises(InvalidInput):
        assign_ids(CURRENT, {"fields": [{"name": "a", "type": "varchar2"}]}, 4)
    with pytest.raises(InvalidInput):
        assign_ids(
            CURRENT, {"fields": [{"name": "a", "type": "int"}, {"name": "A", "type": "int"}]}, 4
        )


def test_domain_modules_import_no_io_library() -> None:
    code = (
        "import sys\n"
        "import datalake.domain.compat, datalake.domain.evolution, datalake.domain.avro_schema\n"
        "bad = {'pyarrow', 'boto3', 'botocore', 'sqlalchemy', 'fastavro'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
