"""Schema drift on ingest: what a job's observed source schema does to a table (pure Python).

A job reads its source files, infers each file's schema (``observed``) and, before any
batch is written, decides once what the table's schema becomes. The table's
``schema_policy`` decides:

``evolve`` (default)
    unknown columns are added as optional fields with fresh ids; safe promotions
    (int->long, float->double, decimal precision widening) are applied; a type is never
    narrowed; an incompatible observed type keeps the table's type (each value is then
    converted or its record rejected); a column the files lack stays (it reads as null),
    and if it was required it becomes optional.
``freeze``
    the schema never changes; a file whose columns differ (unknown or missing names)
    fails its batch with :class:`~datalake.errors.SchemaMismatch`.
``discard_columns``
    the schema never changes; unknown columns are dropped from the records and counted.

All files of one job are merged first (:func:`merge_observed`) so that a job produces at
most one new schema version, whatever its number of files and batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from datalake.domain.compat import Change, allowed, compare, validate_mode
from datalake.domain.schema import Schema, SchemaField
from datalake.domain.types import DecimalType, is_safe_promotion, parse_type
from datalake.domain.vocabulary import DEFAULT_SCHEMA_POLICY, SchemaPolicy
from datalake.errors import SchemaMismatch

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "EvolutionResult",
    "ReadColumn",
    "common_type",
    "evolve",
    "merge_observed",
    "read_plan",
    "rollback_changes",
    "validate_policy",
]

#: The drift policies a table may have.
POLICIES: tuple[str, ...] = tuple(SchemaPolicy)

#: The policy of a table created without one.
DEFAULT_POLICY = DEFAULT_SCHEMA_POLICY


def validate_policy(policy: str | None) -> SchemaPolicy:
    """Normalise and validate a ``schema_policy`` (:meth:`SchemaPolicy.parse`).

    Parameters
    ----------
    policy:
        ``evolve``, ``freeze`` or ``discard_columns`` (case-insensitive, ``-`` for ``_``);
        ``None`` means :data:`DEFAULT_POLICY`.

    Returns
    -------
    SchemaPolicy
        The canonical policy.

    Raises
    ------
    InvalidInput
        When the policy is unknown.
    """
    return SchemaPolicy.parse(policy)


@dataclass(frozen=True)
class EvolutionResult:
    """What observing a job's source schema does to the table.

    Attributes
    ----------
    schema:
        The table's schema after the job (the input schema when nothing changes).
    changes:
        ``compare(table, schema)``: the SchemaChange rows of the new version, if any.
    discarded:
        Unknown columns (as the file spells them) to drop from records
        (``discard_columns``).
    mismatch:
        The differing columns that fail the batch (``freeze`` only): ``unexpected`` then
        ``missing``.
    unexpected:
        Observed columns the table does not have (every policy; informational).
    missing:
        Table columns the files lack (every policy; they read as null).
    skipped:
        Changes ``evolve`` would have made but did not because they break the table's
        compatibility mode (only when a mode is given).
    last_column_id:
        The table's new id high-water mark.
    """

    schema: Schema
    changes: list[Change] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    mismatch: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[Change] = field(default_factory=list)
    last_column_id: int = 0

    @property
    def changed(self) -> bool:
        """Whether a new schema version is needed."""
        return bool(self.changes)

    def raise_for_mismatch(self) -> None:
        """Raise when a frozen table's columns differ from the file's.

        Raises
        ------
        SchemaMismatch
            With ``details = {"unexpected": [...], "missing": [...]}``.
        """
        if not self.mismatch:
            return
        parts = []
        if self.unexpected:
            parts.append(f"unexpected columns {self.unexpected}")
        if self.missing:
            parts.append(f"missing columns {self.missing}")
        raise SchemaMismatch(
            "source columns differ from the frozen table schema: " + "; ".join(parts),
            details={"unexpected": list(self.unexpected), "missing": list(self.missing)},
        )


def _resolve_type(table_type: str, observed_type: str) -> str:
    """The column type after observing ``observed_type``: promoted, never narrowed."""
    if table_type != observed_type and is_safe_promotion(table_type, observed_type):
        return observed_type
    return table_type


def evolve(
    table: Schema,
    observed: Schema,
    policy: str,
    last_column_id: int,
    *,
    mode: str | None = None,
) -> EvolutionResult:
    """Apply the table's drift policy to the schema observed in a job's source files.

    Parameters
    ----------
    table:
        The table's current schema. When it has no columns (a table created without a
        schema), the observed columns are adopted as optional columns whatever the
        policy.
    observed:
        The schema inferred from the job's files (merge several with
        :func:`merge_observed`); its ids are ignored and names match the table's
        case-insensitively.
    policy:
        ``evolve``, ``freeze`` or ``discard_columns``.
    last_column_id:
        The highest id the table has ever used; new columns are numbered above it.
    mode:
        The table's compatibility mode. When given, ``evolve`` leaves out the changes
        that break it (e.g. a promotion under FORWARD) and lists them in ``skipped``;
        the values are then converted or rejected per record. Transitive modes are
        judged against ``table`` only: call :func:`datalake.domain.compat.check` with
        the full history for a final verdict.

    Returns
    -------
    EvolutionResult

    Raises
    ------
    InvalidInput
        When the policy or mode is unknown.
    """
    parsed = validate_policy(policy)
    mode = validate_mode(mode) if mode is not None else None
    next_id = max(last_column_id, table.max_id)
    unexpected = [f for f in observed.fields if table.find(f.name) is None]
    missing = [f for f in table.fields if observed.find(f.name) is None]
    unexpected_names = [f.name for f in unexpected]
    missing_names = [f.name for f in missing]

    if not table.fields:
        parsed = SchemaPolicy.EVOLVE  # an empty table adopts the first file's columns
    if parsed != SchemaPolicy.EVOLVE:
        return EvolutionResult(
            schema=table,
            discarded=unexpected_names if parsed == SchemaPolicy.DISCARD_COLUMNS else [],
            mismatch=unexpected_names + missing_names if parsed == SchemaPolicy.FREEZE else [],
            unexpected=unexpected_names,
            missing=missing_names,
            last_column_id=next_id,
        )

    def permitted(candidate: Change) -> bool:
        return mode is None or allowed(candidate.kind, mode)

    skipped: list[Change] = []
    fields: list[SchemaField] = []
    for col in table.fields:
        seen = observed.find(col.name)
        updated = col
        if seen is not None:
            new_type = _resolve_type(col.type, seen.type)
            if new_type != col.type:
                candidate = col.model_copy(update={"type": new_type})
                change = compare(Schema(fields=(col,)), Schema(fields=(candidate,)))[0]
                if permitted(change):
                    updated = candidate
                else:
                    skipped.append(change)
        elif not col.nullable:
            candidate = col.model_copy(update={"nullable": True})
            change = compare(Schema(fields=(col,)), Schema(fields=(candidate,)))[0]
            if permitted(change):
                updated = candidate
            else:
                skipped.append(change)
        fields.append(updated)
    for seen in unexpected:
        next_id += 1
        fields.append(SchemaField(id=next_id, name=seen.name, type=seen.type, nullable=True))

    schema = Schema(fields=tuple(fields))
    return EvolutionResult(
        schema=schema,
        changes=compare(table, schema),
        unexpected=unexpected_names,
        missing=missing_names,
        skipped=skipped,
        last_column_id=next_id,
    )


def _decimal_or_none(precision: int, scale: int) -> str | None:
    return str(DecimalType(precision, scale)) if precision <= 38 else None


_INTEGER_DIGITS = {"int": 10, "long": 19}
_FLOATING = frozenset({"float", "double"})


def common_type(a: str, b: str) -> str:
    """The narrowest type that holds the values of both ``a`` and ``b`` (for merging files).

    Parameters
    ----------
    a, b:
        Two type names.

    Returns
    -------
    str
        ``a`` when equal; the wider side of a safe promotion; for two decimals, the
        decimal with the larger integer part and the larger scale; an int/long with a
        decimal, the decimal widened to hold the integer; any mix of int, long, float,
        double (or a float with a decimal): ``double``; ``date`` with ``timestamp`` or
        ``timestamptz``: the timestamp; anything else (or a decimal wider than 38
        digits): ``string``.
    """
    ta, tb = parse_type(a), parse_type(b)
    sa, sb = str(ta), str(tb)
    if sa == sb:
        return sa
    if is_safe_promotion(sa, sb):
        return sb
    if is_safe_promotion(sb, sa):
        return sa
    if isinstance(ta, DecimalType) and isinstance(tb, DecimalType):
        scale = max(ta.scale, tb.scale)
        digits = max(ta.precision - ta.scale, tb.precision - tb.scale)
        return _decimal_or_none(digits + scale, scale) or "string"
    for dec, other in ((ta, sb), (tb, sa)):
        if isinstance(dec, DecimalType) and other in _INTEGER_DIGITS:
            digits = max(dec.precision - dec.scale, _INTEGER_DIGITS[other])
            return _decimal_or_none(digits + dec.scale, dec.scale) or "string"
        if isinstance(dec, DecimalType) and other in _FLOATING:
            return "double"
    numeric = set(_INTEGER_DIGITS) | _FLOATING
    if sa in numeric and sb in numeric:
        return "double"
    for date, ts in ((sa, sb), (sb, sa)):
        if date == "date" and ts in ("timestamp", "timestamptz"):
            return ts
    return "string"


def merge_observed(schemas: Sequence[Schema]) -> Schema:
    """Union the schemas observed in several files of one job.

    Parameters
    ----------
    schemas:
        One observed schema per file.

    Returns
    -------
    Schema
        Columns in first-seen order and first-seen spelling (names match
        case-insensitively), typed with :func:`common_type` over the files that have
        them, nullable when any file declares them nullable or lacks them; ids are
        positional (``1..n``) as for any observed schema.
    """
    order: list[str] = []
    merged: dict[str, SchemaField] = {}
    counts: dict[str, int] = {}
    for schema in schemas:
        for f in schema.fields:
            key = f.name.lower()
            if key not in merged:
                order.append(key)
                merged[key] = f
                counts[key] = 1
                continue
            prev = merged[key]
            merged[key] = prev.model_copy(
                update={
                    "type": common_type(prev.type, f.type),
                    "nullable": prev.nullable or f.nullable,
                }
            )
            counts[key] += 1
    fields = []
    for i, key in enumerate(order, start=1):
        f = merged[key]
        nullable = f.nullable or counts[key] < len(schemas)
        fields.append(f.model_copy(update={"id": i, "nullable": nullable}))
    return Schema(fields=tuple(fields))


def rollback_changes(current: Schema, target: Schema) -> list[Change]:
    """The changes that making an older version current implies.

    Parameters
    ----------
    current:
        The table's current schema.
    target:
        The older version being applied. It keeps its own field ids: a column dropped
        since comes back with its original id (so the files that have it read it
        again) and columns added since are dropped; the table's ``last_column_id``
        does not go down.

    Returns
    -------
    list of Change
        ``compare(current, target)``: the SchemaChange rows of the new version that
        records the rollback. Check them against the table's mode like any new version.
    """
    return compare(current, target)


class ReadColumn(BaseModel):
    """How one column of the current schema is read from a file written under another.

    ``action`` is ``read`` (same type), ``promote`` (safe widening), ``cast`` (an
    unsafe conversion a ``NONE``-mode history allowed; values that do not fit fail),
    or ``null`` (the file has no such field id: the column reads as null).
    """

    model_config = ConfigDict(frozen=True)

    field_id: int
    name: str
    type: str
    nullable: bool
    source: str | None
    source_type: str | None
    action: str


def read_plan(written: Schema, current: Schema) -> list[ReadColumn]:
    """Project a data file written under ``written`` onto the ``current`` schema.

    Parameters
    ----------
    written:
        The schema version the file was written with.
    current:
        The table's current schema.

    Returns
    -------
    list of ReadColumn
        One entry per current column, in order: its source column in the file found by
        field id (so renames are followed), and the action that yields its value.
        Columns of the file that ``current`` dropped are not read.
    """
    plan = []
    for col in current.fields:
        src = written.by_id(col.id)
        if src is None:
            action = "null"
        elif src.type == col.type:
            action = "read"
        elif is_safe_promotion(src.type, col.type):
            action = "promote"
        else:
            action = "cast"
        plan.append(
            ReadColumn(
                field_id=col.id,
                name=col.name,
                type=col.type,
                nullable=col.nullable,
                source=src.name if src is not None else None,
                source_type=src.type if src is not None else None,
                action=action,
            )
        )
    return plan
