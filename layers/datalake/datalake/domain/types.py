"""Iceberg primitive type names, parsed and validated (pure Python).

A type is carried as its canonical string (``"long"``, ``"decimal(10,2)"``) so that it
serialises to JSON and to the catalog unchanged; :func:`parse_type` validates it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datalake.errors import InvalidInput

PRIMITIVES: frozenset[str] = frozenset(
    {
        "boolean",
        "int",
        "long",
        "float",
        "double",
        "date",
        "time",
        "timestamp",
        "timestamptz",
        "string",
        "uuid",
        "binary",
    }
)

_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_FIXED = re.compile(r"^fixed\[\s*(\d+)\s*\]$")

#: Aliases users commonly write; normalised to the Iceberg name.
ALIASES: dict[str, str] = {
    "bool": "boolean",
    "integer": "int",
    "int32": "int",
    "bigint": "long",
    "int64": "long",
    "float32": "float",
    "real": "float",
    "float64": "double",
    "str": "string",
    "text": "string",
    "varchar": "string",
    "bytes": "binary",
    "datetime": "timestamp",
}


@dataclass(frozen=True, slots=True)
class DecimalType:
    """A ``decimal(precision, scale)`` type."""

    precision: int
    scale: int

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})"


def parse_type(name: str) -> str | DecimalType:
    """Validate a type name and return its canonical form.

    Parameters
    ----------
    name:
        An Iceberg primitive name (``long``, ``timestamptz``, ``decimal(10,2)``) or a
        common alias (``bigint``, ``text``).

    Returns
    -------
    str or DecimalType
        The canonical primitive name, or a :class:`DecimalType`.

    Raises
    ------
    InvalidInput
        When the name is not a known type.
    """
    text = str(name).strip().lower()
    text = ALIASES.get(text, text)
    if text in PRIMITIVES:
        return text
    m = _DECIMAL.match(text)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise InvalidInput(f"invalid decimal type {name!r}: need 1<=P<=38 and S<=P")
        return DecimalType(precision, scale)
    if _FIXED.match(text):
        return text
    raise InvalidInput(
        f"unknown type {name!r}; expected one of {sorted(PRIMITIVES)} or decimal(P,S)"
    )


def canonical_type(name: str) -> str:
    """Return the canonical string of a type name (see :func:`parse_type`)."""
    return str(parse_type(name))


def is_safe_promotion(old: str, new: str) -> bool:
    """Whether values of type ``old`` can always be read as type ``new``.

    Safe promotions are Iceberg's: int->long, float->double, and decimal(P,S) ->
    decimal(P',S) with P' > P. A type is trivially promotable to itself.
    """
    a, b = parse_type(old), parse_type(new)
    if a == b:
        return True
    if (a, b) in {("int", "long"), ("float", "double")}:
        return True
    if isinstance(a, DecimalType) and isinstance(b, DecimalType):
        return a.scale == b.scale and b.precision > a.precision
    return False
