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
        if n < 1:
            raise InvalidInput(f"{m.group(1)} parameter must be >= 1, got {n}")
        return Transform(kind=m.group(1), param=n)
    m = _RANGE.match(str(text).strip())
    if m:
        bounds = tuple(b.strip() for b in m.group(1).split(",") if b.strip())
        if not bounds:
            raise InvalidInput("range[...] needs at least one boundary")
        return Transform(kind="range", bounds=bounds)
    raise InvalidInput(
        f"unknown partition transform {text!r}; expected identity, year, month, day, hour, "
        "bucket[N], truncate[W] or range[b1,b2,...]"
    )


class PartitionField(BaseModel):
    """One partition field: a source column, a transform and the path name."""

    model_config = ConfigDict(frozen=True)

    column: str = Field(min_length=1)
    transform: str = "identity"
    name: str | None = None

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
