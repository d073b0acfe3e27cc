"""Partition specs: a list of (column, transform) pairs, Iceberg style (pure Python).

Transforms: ``identity``, ``year``, ``month``, ``day``, ``hour``, ``bucket[N]``,
``truncate[W]`` and ``range[b1,b2,...]`` (explicit, ascending boundaries). The seed's
"date", "hash" and "range" strategies are ``day``, ``bucket[N]`` and ``range[...]``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from datalake.errors import InvalidInput, describe_validation_error

_PARAM = re.compile(r"^(bucket|truncate)\[\s*(\d+)\s*\]$")
_RANGE = re.compile(r"^range\[(.*)\]$")
_SIMPLE = frozenset({"identity", "year", "month", "day", "hour", "void"})
#: bucket[N] and truncate[W] take Iceberg's 32-bit integer parameter.
MAX_TRANSFORM_PARAM = 2**31 - 1
#: Explicit range boundaries per field.
MAX_RANGE_BOUNDS = 1000


class Transform(BaseModel):
    """A parsed transform: its kind and parameter (N, W or the range boundaries)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    param: int | None = None
    bounds: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind in ("bucket", "truncate"):
            return f"{self.kind}[{self.param}]"
        if self.kind == "range":
            return "range[" + ",".join(self.bounds) + "]"
        return self.kind


def parse_transform(text: str) -> Transform:
    """Parse a transform string such as ``day`` or ``bucket[16]``.

    Raises
    ------
    InvalidInput
        When the transform is unknown or its parameter is invalid.
    """
    t = str(text).strip().lower().replace(" ", "")
    # The seed's strategy names, accepted as aliases.
    t = {"date": "day", "hash": "bucket[16]"}.get(t, t)
    if t in _SIMPLE:
        return Transform(kind=t)
    m = _PARAM.match(t)
    if m:
        n = int(m.group(2))
        if not 1 <= n <= MAX_TRANSFORM_PARAM:
            raise InvalidInput(
                f"{m.group(1)} parameter must be between 1 and {MAX_TRANSFORM_PARAM}, got {n}"
            )
        return Transform(kind=m.group(1), param=n)
    m = _RANGE.match(str(text).strip())
    if m:
        bounds = tuple(b.strip() for b in m.group(1).split(",") if b.strip())
        if not bounds:
            raise InvalidInput("range[...] needs at least one boundary")
        _check_bounds(bounds)
        return Transform(kind="range", bounds=bounds)
    raise InvalidInput(
        f"unknown partition transform {text!r}; expected identity, year, month, day, hour, "
        "bucket[N], truncate[W] or range[b1,b2,...]"
    )


def _check_bounds(bounds: tuple[str, ...]) -> None:
    """Range boundaries must be strictly ascending: numerically when all are numbers,
    else as text (ISO dates and timestamps sort as text)."""
    if len(bounds) > MAX_RANGE_BOUNDS:
        raise InvalidInput(f"range[...] takes at most {MAX_RANGE_BOUNDS} boundaries")
    keys: list[Any]
    try:
        keys = [float(b) for b in bounds]
    except ValueError:
        keys = list(bounds)
    for lo, hi, a, b in zip(keys, keys[1:], bounds, bounds[1:], strict=False):
        if not lo < hi:
            raise InvalidInput(
                f"range[...] boundaries must be unique and ascending: {a!r} is not below {b!r}"
            )


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a partition field's path name (``<name>=<value>/``), or None.

    A name is one path segment that needs no escaping, so it reads back as itself in every
    engine's Hive-style discovery: no '/', '=', '%', control characters, '.' or '..'.
    """
    if not name or len(name) > 128:
        return "must be 1 to 128 characters"
    if name in (".", "..") or escape_path_value(name) != name:
        return "must be a plain path segment (no / = % : ? * # \\ or control characters)"
    return None


class PartitionField(BaseModel):
    """One partition field: a source column, a transform and the path name."""

    model_config = ConfigDict(frozen=True)

    column: str = Field(min_length=1, max_length=255)
    transform: str = Field(default="identity", max_length=20_000)
    name: str | None = Field(default=None, max_length=128)

    @field_validator("transform")
    @classmethod
    def _valid(cls, value: str) -> str:
        try:
            return str(parse_transform(value))
        except InvalidInput as e:
            raise ValueError(e.message) from e

    @model_validator(mode="after")
    def _default_name(self) -> PartitionField:
        if self.name is None:
            kind = parse_transform(self.transform).kind
            name = self.column if kind == "identity" else f"{self.column}_{kind}"
            object.__setattr__(self, "name", name)
        assert self.name is not None
        problem = name_problem(self.name)
        if problem:
            raise ValueError(f"partition name {self.name!r} {problem}; set 'name' to rename it")
        return self

    @property
    def parsed(self) -> Transform:
        """The parsed transform."""
        return parse_transform(self.transform)

    @property
    def path_name(self) -> str:
        """The Hive path segment name (``<name>=<value>``)."""
        assert self.name is not None
        return self.name


def parse_partitioning(data: Any) -> list[PartitionField]:
    """Validate the API/catalog JSON form of a partition spec.

    Raises
    ------
    InvalidInput
        When it is not a list of ``{"column", "transform", "name"?}`` objects.
    """
    if data is None:
        return []
    if not isinstance(data, list):
        raise InvalidInput("partitioning must be a list of {column, transform, name?}")
    try:
        fields = [PartitionField.model_validate(item) for item in data]
    except ValueError as e:
        raise InvalidInput(f"invalid partitioning: {describe_validation_error(e)}") from e
    names = [f.path_name for f in fields]
    if len(set(names)) != len(names):
        raise InvalidInput("partition field names must be unique")
    return fields


#: Hive's name for the partition of null values (Spark, Trino and DuckDB read it as null).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_ESCAPE = frozenset('"#%\'*/:=?\\\x7f{[]^')


def escape_path_value(value: str) -> str:
    """Hive's path escaping (``FileUtils.escapePathName``); '' becomes the null partition."""
    out = [f"%{ord(ch):02X}" if ch in _ESCAPE or ord(ch) < 0x20 else ch for ch in value]
    return "".join(out) or NULL_PARTITION


def hive_path(values: dict[str, str | None]) -> str:
    """``name=value/...`` of a partition's values, in spec order ('' when unpartitioned).

    Parameters
    ----------
    values:
        Partition field name -> transformed value as a string, ``None`` for null.
    """
    return "/".join(
        f"{name}={NULL_PARTITION if v is None else escape_path_value(str(v))}"
        for name, v in values.items()
    )
