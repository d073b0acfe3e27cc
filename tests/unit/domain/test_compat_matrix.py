"""The compatibility matrix: every kind of change x every mode, against one literal table.

``TABLE`` below is written out by hand and mirrors the table in docs/schema-evolution.md
(which is generated from ``compat.RULES``); the tests check all three agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from datalake.domain.compat import MODES, RULES, ChangeType, check, compare, rules_markdown
from datalake.domain.schema import Schema, SchemaField

# fmt: off
#: rule -> allowed under (BACKWARD, FORWARD, FULL, NONE); *_TRANSITIVE = the same column,
#: checked against every earlier version.
TABLE: dict[str, tuple[bool, bool, bool, bool]] = {
    #                    BACKWARD FORWARD FULL   NONE
    "add_optional":      (True,  True,  True,  True),
    "add_required":      (False, True,  False, True),
    "drop_optional":     (True,  True,  True,  True),
    "drop_required":     (True,  False, False, True),
    "rename":            (True,  True,  True,  True),
    "promote":           (True,  False, False, True),
    "narrow":            (False, True,  False, True),
    "incompatible_type": (False, False, False, True),
    "make_optional":     (True,  False, False, True),
    "make_required":     (False, True,  False, True),
}
# fmt: on
COLUMNS = ("BACKWARD", "FORWARD", "FULL", "NONE")

CHANGE_TYPE = {
    "add_optional": ChangeType.ADD_COLUMN,
    "add_required": ChangeType.ADD_COLUMN,
    "drop_optional": ChangeType.DROP_COLUMN,
    "drop_required": ChangeType.DROP_COLUMN,
    "rename": ChangeType.RENAME_COLUMN,
    "promote": ChangeType.CHANGE_TYPE,
    "narrow": ChangeType.CHANGE_TYPE,
    "incompatible_type": ChangeType.CHANGE_TYPE,
    "make_optional": ChangeType.CHANGE_NULLABILITY,
    "make_required": ChangeType.CHANGE_NULLABILITY,
}


def _schema(*extra: SchemaField) -> Schema:
    return Schema(fields=(SchemaField(id=1, name="id", type="long", nullable=False), *extra))


def _col(type_: str = "int", nullable: bool = True, name: str = "a") -> SchemaField:
    return SchemaField(id=2, name=name, type=type_, nullable=nullable)


#: rule -> (old schema, new schema) differing by exactly that change.
PAIRS: dict[str, Callable[[], tuple[Schema, Schema]]] = {
    "add_optional": lambda: (_schema(), _schema(_col())),
    "add_required": lambda: (_schema(), _schema(_col(nullable=False))),
    "drop_optional": lambda: (_schema(_col()), _schema()),
    "drop_required": lambda: (_schema(_col(nullable=False)), _schema()),
    "rename": lambda: (_schema(_col()), _schema(_col(name="renamed"))),
    "promote": lambda: (_schema(_col("int")), _schema(_col("long"))),
    "narrow": lambda: (_schema(_col("double")), _schema(_col("float"))),
    "incompatible_type": lambda: (_schema(_col("long")), _schema(_col("string"))),
    "make_optional": lambda: (_schema(_col(nullable=False)), _schema(_col(nullable=True))),
    "make_required": lambda: (_schema(_col(nullable=True)), _schema(_col(nullable=False))),
}


def expected(rule: str, mode: str) -> bool:
    return TABLE[rule][COLUMNS.index(mode.removesuffix("_TRANSITIVE"))]


CASES = [(rule, mode) for rule in TABLE for mode in MODES]


def test_the_matrix_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert set(CHANGE_TYPE.values()) == set(ChangeType)


@pytest.mark.parametrize(("rule", "mode"), CASES)
def test_change_against_latest_version(rule: str, mode: str) -> None:
    old, new = PAIRS[rule]()
    violations = check(mode, [old], new)
    assert (not violations) is expected(rule, mode)
    for v in violations:
        assert v.change.kind == rule
        assert v.against_version == 1


@pytest.mark.parametrize(("rule", "mode"), CASES)
def test_change_against_an_earlier_version_only(rule: str, mode: str) -> None:
    """The latest version already equals ``new``: only a transitive mode sees the change."""
    old, new = PAIRS[rule]()
    violations = check(mode, [old, new], new)
    if mode.endswith("_TRANSITIVE"):
        assert (not violations) is expected(rule, mode)
        assert all(v.against_version == 1 for v in violations)
    else:
        assert violations == []


@pytest.mark.parametrize("rule", list(TABLE))
def test_each_pair_is_exactly_one_change_of_its_rule(rule: str) -> None:
    old, new = PAIRS[rule]()
    changes = compare(old, new)
    assert [(c.type, c.kind) for c in changes] == [(CHANGE_TYPE[rule], rule)]
    change = changes[0]
    backward, forward = TABLE[rule][0], TABLE[rule][1]
    assert change.breaking_backward is not backward
    assert change.breaking_forward is not forward
    for mode in MODES:
        assert change.breaking(mode) is not expected(rule, mode)
        assert change.to_json(mode)["breaking"] is not expected(rule, mode)


def test_code_rules_match_the_literal_table() -> None:
    assert list(RULES) == list(TABLE)
    for rule, (backward, forward, full, none) in TABLE.items():
        assert (RULES[rule].backward, RULES[rule].forward) == (backward, forward)
        assert full is (backward and forward)
        assert none is True
        assert RULES[rule].change_type is CHANGE_TYPE[rule]


def test_docs_table_is_the_generated_one() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "schema-evolution.md"
    assert rules_markdown() in docs.read_text(encoding="utf-8")
