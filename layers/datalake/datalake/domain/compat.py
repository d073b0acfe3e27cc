"""Schema comparison and compatibility modes (pure Python).

Two schema versions are matched **by field id** (as in Apache Iceberg), never by name:
a renamed column keeps its id, so a rename is one ``RENAME_COLUMN`` change and old data
files are never reinterpreted.

Compatibility is defined from the reader's point of view, as Confluent Schema Registry
does:

``BACKWARD``
    data written with the OLD schema can be read with the NEW schema (the lake's own
    case: every committed file is read under the table's current schema);
``FORWARD``
    data written with the NEW schema can be read with the OLD schema (a consumer pinned
    to an older version keeps working);
``FULL``
    both; ``NONE``: no check;
``*_TRANSITIVE``
    the check is made against every earlier version, not only the latest one.

Every change is classified into one *kind* of :data:`RULES`, the single rule table the
code, the test matrix and ``docs/schema-evolution.md`` agree on
(:func:`rules_markdown` renders it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from datalake.domain.schema import Schema, SchemaField
from datalake.domain.types import is_safe_promotion
from datalake.errors import IncompatibleSchema, InvalidInput

__all__ = [
    "BASE_MODES",
    "DEFAULT_MODE",
    "MODES",
    "RULES",
    "Change",
    "ChangeType",
    "Rule",
    "Violation",
    "allowed",
    "assign_ids",
    "check",
    "compare",
    "compatibility",
    "ensure_compatible",
    "rules_markdown",
    "validate_mode",
]


class ChangeType(StrEnum):
    """The five kinds of change the API reports."""

    ADD_COLUMN = "ADD_COLUMN"
    DROP_COLUMN = "DROP_COLUMN"
    RENAME_COLUMN = "RENAME_COLUMN"
    CHANGE_TYPE = "CHANGE_TYPE"
    CHANGE_NULLABILITY = "CHANGE_NULLABILITY"


#: Every compatibility mode a table may have, in documentation order.
MODES: tuple[str, ...] = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)

#: The non-transitive modes (the columns of the rules table).
BASE_MODES: tuple[str, ...] = ("BACKWARD", "FORWARD", "FULL", "NONE")

#: The mode of a table created without one.
DEFAULT_MODE = "BACKWARD"

#: AWS Glue Schema Registry spells the transitive modes ``*_ALL``; accepted as aliases.
_MODE_ALIASES: dict[str, str] = {
    "BACKWARD_ALL": "BACKWARD_TRANSITIVE",
    "FORWARD_ALL": "FORWARD_TRANSITIVE",
    "FULL_ALL": "FULL_TRANSITIVE",
}


class Rule(NamedTuple):
    """One row of the rules table: a kind of change and what each direction allows."""

    change_type: ChangeType
    description: str
    backward: bool
    forward: bool
    why: str


#: The rules table. ``backward`` / ``forward``: whether the change keeps that direction
#: readable. FULL allows a change when both do; NONE allows everything.
RULES: dict[str, Rule] = {
    "add_optional": Rule(
        ChangeType.ADD_COLUMN,
        "add an optional (nullable) column",
        True,
        True,
        "old files read the column as null; an old reader ignores the unknown id",
    ),
    "add_required": Rule(
        ChangeType.ADD_COLUMN,
        "add a required column",
        False,
        True,
        "old files have no value for a column that may not be null (there are no defaults)",
    ),
    "drop_optional": Rule(
        ChangeType.DROP_COLUMN,
        "drop an optional column",
        True,
        True,
        "the new reader ignores the old values; an old reader reads null",
    ),
    "drop_required": Rule(
        ChangeType.DROP_COLUMN,
        "drop a required column",
        True,
        False,
        "an old reader would read null into a column it declares required",
    ),
    "rename": Rule(
        ChangeType.RENAME_COLUMN,
        "rename a column (same field id)",
        True,
        True,
        "columns are matched by field id, so the name is only a label",
    ),
    "promote": Rule(
        ChangeType.CHANGE_TYPE,
        "safe type promotion (int->long, float->double, decimal(P,S)->decimal(P',S), P'>P)",
        True,
        False,
        "every old value fits the wider type; an old reader cannot hold the wider values",
    ),
    "narrow": Rule(
        ChangeType.CHANGE_TYPE,
        "narrowing, the reverse of a safe promotion (long->int, double->float, ...)",
        False,
        True,
        "old values may not fit the narrower type; an old reader promotes the new values",
    ),
    "incompatible_type": Rule(
        ChangeType.CHANGE_TYPE,
        "any other type change (long->string, int->double, decimal scale, ...)",
        False,
        False,
        "no lossless conversion exists in either direction",
    ),
    "make_optional": Rule(
        ChangeType.CHANGE_NULLABILITY,
        "required -> optional",
        True,
        False,
        "old values are never null; new values may be null, which an old reader refuses",
    ),
    "make_required": Rule(
        ChangeType.CHANGE_NULLABILITY,
        "optional -> required",
        False,
        True,
        "old files may hold nulls; new values are never null",
    ),
}


def validate_mode(mode: str | None) -> str:
    """Normalise and validate a compatibility mode.

    Parameters
    ----------
    mode:
        One of :data:`MODES` (case-insensitive); Glue's ``BACKWARD_ALL``, ``FORWARD_ALL``
        and ``FULL_ALL`` are accepted as the ``*_TRANSITIVE`` modes. ``None`` means
        :data:`DEFAULT_MODE`.

    Returns
    -------
    str
        The canonical mode name.

    Raises
    ------
    InvalidInput
        When the mode is unknown.
    """
    if mode is None:
        return DEFAULT_MODE
    text = str(mode).strip().upper().replace("-", "_")
    text = _MODE_ALIASES.get(text, text)
    if text not in MODES:
        raise InvalidInput(f"unknown compatibility mode {mode!r}; expected one of {list(MODES)}")
    return text


def _base(mode: str) -> str:
    return mode.removesuffix("_TRANSITIVE")


def allowed(kind: str, mode: str) -> bool:
    """Whether a change of this kind is allowed under ``mode``.

    Parameters
    ----------
    kind:
        A key of :data:`RULES` (``"add_optional"``, ``"promote"``, ...).
    mode:
        A compatibility mode; a transitive mode allows what its base mode allows.

    Returns
    -------
    bool
    """
    rule = RULES[kind]
    base = _base(validate_mode(mode))
    if base == "NONE":
        return True
    if base == "BACKWARD":
        return rule.backward
    if base == "FORWARD":
        return rule.forward
    return rule.backward and rule.forward


class Change(BaseModel):
    """One difference between two schema versions.

    Attributes
    ----------
    type:
        The :class:`ChangeType`.
    kind:
        The row of :data:`RULES` this change falls under.
    column:
        The column's name: the old name for ``DROP_COLUMN`` and ``RENAME_COLUMN``, the
        new name otherwise.
    field_id:
        The column's stable id.
    from_, to:
        Before and after: the type for ``ADD``/``DROP``/``CHANGE_TYPE``, the name for
        ``RENAME``, ``"required"``/``"optional"`` for ``CHANGE_NULLABILITY``.
    breaking_backward, breaking_forward:
        Whether the change breaks BACKWARD (old data, new reader) or FORWARD (new data,
        old reader) compatibility.
    """

    model_config = ConfigDict(frozen=True)

    type: ChangeType
    kind: str
    column: str
    field_id: int
    from_: str | None = None
    to: str | None = None
    breaking_backward: bool
    breaking_forward: bool

    @classmethod
    def of(
        cls,
        kind: str,
        column: str,
        field_id: int,
        from_: str | None = None,
        to: str | None = None,
    ) -> Change:
        """Build a change of a :data:`RULES` kind, taking its breaking flags from the table."""
        rule = RULES[kind]
        return cls(
            type=rule.change_type,
            kind=kind,
            column=column,
            field_id=field_id,
            from_=from_,
            to=to,
            breaking_backward=not rule.backward,
            breaking_forward=not rule.forward,
        )

    def breaking(self, mode: str = DEFAULT_MODE) -> bool:
        """Whether this change breaks ``mode`` (transitive modes as their base mode)."""
        return not allowed(self.kind, mode)

    def to_json(self, mode: str = DEFAULT_MODE, *, detail: bool = False) -> dict[str, Any]:
        """The API form ``{"type", "column", "from"?, "to"?, "breaking"}``.

        Parameters
        ----------
        mode:
            The mode ``"breaking"`` is relative to (default BACKWARD).
        detail:
            Also include ``field_id``, ``kind``, ``breaking_backward`` and
            ``breaking_forward``.
        """
        out: dict[str, Any] = {"type": self.type.value, "column": self.column}
        if self.from_ is not None:
            out["from"] = self.from_
        if self.to is not None:
            out["to"] = self.to
        out["breaking"] = self.breaking(mode)
        if detail:
            out.update(
                field_id=self.field_id,
                kind=self.kind,
                breaking_backward=self.breaking_backward,
                breaking_forward=self.breaking_forward,
            )
        return out

    def __str__(self) -> str:
        if self.type is ChangeType.RENAME_COLUMN:
            return f"{self.type.value} {self.from_!r} -> {self.to!r}"
        arrow = ""
        if self.from_ is not None and self.to is not None:
            arrow = f" {self.from_} -> {self.to}"
        elif self.to is not None:
            arrow = f" {self.to}"
        elif self.from_ is not None:
            arrow = f" (was {self.from_})"
        return f"{self.type.value} {self.column!r}{arrow}"


def _nullability(nullable: bool) -> str:
    return "optional" if nullable else "required"


def _type_kind(old: str, new: str) -> str:
    if is_safe_promotion(old, new):
        return "promote"
    if is_safe_promotion(new, old):
        return "narrow"
    return "incompatible_type"


def compare(old: Schema, new: Schema) -> list[Change]:
    """List the changes from ``old`` to ``new``, matching columns by field id.

    Parameters
    ----------
    old, new:
        Two versions of a table's schema. User-proposed schemas should first go through
        :func:`assign_ids` so that their ids mean what the user meant.

    Returns
    -------
    list of Change
        For each old column in order: ``DROP_COLUMN``, or ``RENAME_COLUMN``,
        ``CHANGE_TYPE`` and ``CHANGE_NULLABILITY`` as they apply (one change per
        aspect); then one ``ADD_COLUMN`` per new column, in the new schema's order.
    """
    changes: list[Change] = []
    for was in old.fields:
        now = new.by_id(was.id)
        if now is None:
            kind = "drop_optional" if was.nullable else "drop_required"
            changes.append(Change.of(kind, was.name, was.id, from_=was.type))
            continue
        if now.name != was.name:
            changes.append(Change.of("rename", was.name, was.id, from_=was.name, to=now.name))
        if now.type != was.type:
            changes.append(
                Change.of(_type_kind(was.type, now.type), now.name, was.id, was.type, now.type)
            )
        if now.nullable != was.nullable:
            changes.append(
                Change.of(
                    "make_optional" if now.nullable else "make_required",
                    now.name,
                    was.id,
                    _nullability(was.nullable),
                    _nullability(now.nullable),
                )
            )
    for now in new.fields:
        if old.by_id(now.id) is None:
            kind = "add_optional" if now.nullable else "add_required"
            changes.append(Change.of(kind, now.name, now.id, to=now.type))
    return changes


def compatibility(old: Schema, new: Schema) -> dict[str, bool]:
    """Whether the pair is BACKWARD, FORWARD and FULL compatible.

    Parameters
    ----------
    old, new:
        Two versions of a schema.

    Returns
    -------
    dict
        ``{"BACKWARD": bool, "FORWARD": bool, "FULL": bool}``.
    """
    changes = compare(old, new)
    backward = not any(c.breaking_backward for c in changes)
    forward = not any(c.breaking_forward for c in changes)
    return {"BACKWARD": backward, "FORWARD": forward, "FULL": backward and forward}


class Violation(BaseModel):
    """A change that breaks the table's mode against one earlier version."""

    model_config = ConfigDict(frozen=True)

    mode: str
    direction: str  # "BACKWARD" or "FORWARD"
    against_version: int
    change: Change
    message: str

    def to_json(self) -> dict[str, Any]:
        """The API form (used in the 409 body's ``detail``)."""
        return {
            "mode": self.mode,
            "direction": self.direction,
            "against_version": self.against_version,
            "change": self.change.to_json(self.mode),
            "message": self.message,
        }


_WHY = {
    "BACKWARD": "data written with version {v} could not be read with the new schema",
    "FORWARD": "data written with the new schema could not be read with version {v}",
}


def _breaks(change: Change, direction: str) -> bool:
    return change.breaking_backward if direction == "BACKWARD" else change.breaking_forward


def check(
    mode: str,
    history: Sequence[Schema],
    new: Schema,
    *,
    versions: Sequence[int] | None = None,
    written: Collection[int] | None = None,
) -> list[Violation]:
    """The violations that refuse ``new`` under ``mode``.

    Parameters
    ----------
    mode:
        The table's compatibility mode (see :func:`validate_mode`).
    history:
        The table's schema versions, oldest first. A non-transitive mode checks only
        against the latest (``history[-1]``); a ``*_TRANSITIVE`` mode against every one.
    new:
        The proposed schema (with ids assigned, see :func:`assign_ids`).
    versions:
        The version numbers of ``history`` for the messages; default ``1..len(history)``.
    written:
        The version numbers some data of the table was written with; ``None`` (unknown)
        means every version. The BACKWARD direction promises that data stays readable,
        so it skips versions no data was written with: it checks the latest version
        that has data (every one under ``*_TRANSITIVE``), and nothing on a table with
        no data. The FORWARD direction, a promise to readers of the old versions, is
        checked as without it.

    Returns
    -------
    list of Violation
        Empty when ``new`` is acceptable (always for ``NONE`` or an empty history).

    Raises
    ------
    InvalidInput
        When ``mode`` is unknown or ``versions`` does not match ``history``.
    """
    mode = validate_mode(mode)
    base = _base(mode)
    if base == "NONE" or not history:
        return []
    numbers = list(versions) if versions is not None else list(range(1, len(history) + 1))
    if len(numbers) != len(history):
        raise InvalidInput("versions must number every schema of the history")
    pairs = list(zip(numbers, history, strict=True))
    forward = numbers
    backward = numbers if written is None else [n for n in numbers if n in set(written)]
    if not mode.endswith("_TRANSITIVE"):
        forward, backward = forward[-1:], backward[-1:]
    directions = {"BACKWARD": ("BACKWARD",), "FORWARD": ("FORWARD",)}.get(
        base, ("BACKWARD", "FORWARD")
    )
    against = {"BACKWARD": set(backward), "FORWARD": set(forward)}
    out: list[Violation] = []
    for number, old in pairs:
        if not any(number in against[d] for d in directions):
            continue
        for change in compare(old, new):
            for direction in directions:
                if number in against[direction] and _breaks(change, direction):
                    out.append(
                        Violation(
                            mode=mode,
                            direction=direction,
                            against_version=number,
                            change=change,
                            message=f"{change}: {_WHY[direction].format(v=number)} "
                            f"({RULES[change.kind].why})",
                        )
                    )
    return out


def ensure_compatible(
    mode: str,
    history: Sequence[Schema],
    new: Schema,
    *,
    versions: Sequence[int] | None = None,
    written: Collection[int] | None = None,
) -> None:
    """Raise when ``new`` breaks ``mode`` (see :func:`check`, also for ``written``).

    Raises
    ------
    IncompatibleSchema
        With ``details`` = the violations' JSON forms (HTTP 409).
    """
    violations = check(mode, history, new, versions=versions, written=written)
    if violations:
        summary = "; ".join(v.message for v in violations[:5])
        more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
        raise IncompatibleSchema(
            f"schema change breaks {violations[0].mode} compatibility: {summary}{more}",
            details=[v.to_json() for v in violations],
        )


def _explicit_fields(proposed: Schema | Mapping[str, Any]) -> list[dict[str, Any]]:
    if isinstance(proposed, Schema):
        return [f.model_dump() for f in proposed.fields]
    raw = proposed.get("fields") if isinstance(proposed, Mapping) else None
    if not isinstance(raw, list):
        raise InvalidInput("schema must be an object with a 'fields' list")
    out = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise InvalidInput("each schema field must be an object")
        out.append(dict(item))
    return out


def assign_ids(
    current: Schema,
    proposed: Schema | Mapping[str, Any],
    last_column_id: int,
    *,
    refuse_dropped: bool = True,
) -> Schema:
    """Give a user-proposed schema the field ids it means relative to ``current``.

    Parameters
    ----------
    current:
        The table's current schema.
    proposed:
        Either the JSON form ``{"fields": [{"name", "type", "nullable"?, "id"?}]}`` as
        the API receives it, or a :class:`Schema`, whose ids are then all taken as
        explicit (do not pass ``Schema.from_json(raw)`` of user input: ``from_json``
        numbers missing ids by position, which would turn a drop+add into a rename).
    last_column_id:
        The highest id the table has ever used (kept by the catalog; ids of dropped
        columns are never reused).
    refuse_dropped:
        Refuse an explicit id that belonged to a dropped column (a change of the table).
        A comparison of two schemas passes False (and 0 for ``last_column_id``): there an
        id absent from ``current`` is simply another column.

    Returns
    -------
    Schema
        The proposed fields, in the proposed order, where a field with an explicit id
        keeps it (a different name is a rename), a field without one takes the id of
        the current column with the same name (case-insensitive) not already claimed by
        an explicit id, and any other field gets a fresh id above
        ``max(last_column_id, current.max_id)``.

    Raises
    ------
    InvalidInput
        When an explicit id belonged to a dropped column (it is at most
        ``last_column_id`` but not in ``current``; only with ``refuse_dropped``), appears
        twice, or the result is not a valid schema.
    """
    items = _explicit_fields(proposed)
    floor = max(last_column_id, current.max_id)
    claimed: set[int] = set()
    for item in items:
        raw_id = item.get("id")
        if raw_id in (None, 0, ""):
            continue
        try:
            fid = int(raw_id)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"field id {raw_id!r} is not an integer") from e
        if fid in claimed:
            raise InvalidInput(f"field id {fid} appears twice")
        if refuse_dropped and current.by_id(fid) is None and fid <= floor:
            raise InvalidInput(
                f"field id {fid} belonged to a dropped column; ids are never reused "
                f"(new columns take ids above {floor})"
            )
        claimed.add(fid)
        item["id"] = fid
    next_id = max([floor, *claimed])
    for item in items:
        if item.get("id") not in (None, 0, ""):
            continue
        name = str(item.get("name", ""))
        match: SchemaField | None = current.find(name) if name else None
        if match is not None and match.id not in claimed:
            item["id"] = match.id
        else:
            next_id += 1
            item["id"] = next_id
        claimed.add(item["id"])
    try:
        return Schema.model_validate({"fields": items})
    except ValueError as e:
        raise InvalidInput(f"invalid schema: {e}") from e


def rules_markdown() -> str:
    """The rules table as Markdown (the one in ``docs/schema-evolution.md``).

    Returns
    -------
    str
        One row per kind of change, one column per base mode; transitive modes allow
        what their base mode allows, checked against every earlier version.
    """

    def mark(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines = [
        "| change type | rule | change | BACKWARD | FORWARD | FULL | NONE |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, rule in RULES.items():
        cells = [mark(allowed(kind, mode)) for mode in BASE_MODES]
        lines.append(
            f"| `{rule.change_type.value}` | `{kind}` | {rule.description} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"
