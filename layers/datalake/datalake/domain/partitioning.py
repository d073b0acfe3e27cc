"""Partition specs and partition values: the rules every layer follows (pure Python).

Transforms: ``identity``, ``year``, ``month``, ``day``, ``hour``, ``bucket[N]``,
``truncate[W]`` and ``range[b1,b2,...]`` (explicit, ascending boundaries). The seed's
"date", "hash" and "range" strategies are ``day``, ``bucket[N]`` and ``range[...]``.

The rules for values live here too, so the engine (which computes them), the catalog and
the API (which check and show them) agree: a field's path name (:class:`PartitionField`,
:func:`name_problem`), a transformed value's human string (:func:`human_string`, Iceberg's:
``2017``, ``2017-11``, ``2017-11-16``, ``2017-11-16-22``; a range is named ``lt_<b1>``,
``<b1>_to_<b2>``, ..., ``ge_<bk>``, :func:`range_names`), and its Hive-escaped path
(:func:`escape_path_value`, :func:`hive_path`; null is ``__HIVE_DEFAULT_PARTITION__``).
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
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


def partition_path(fields: list[PartitionField], values: tuple[str | None, ...]) -> str:
    """``name=value/...`` of one partition's human strings, in ``fields`` order.

    Parameters
    ----------
    fields:
        The partition spec.
    values:
        One human string (or ``None``) per field, as :func:`human_string` gives them.
    """
    return hive_path({f.path_name: v for f, v in zip(fields, values, strict=True)})


def range_names(bounds: tuple[str, ...]) -> list[str]:
    """Readable names of the k+1 ranges of ``range[b1..bk]``: ``lt_b1``, ``b1_to_b2``, ...,
    ``ge_bk``."""
    b = [x.strip() for x in bounds]
    names = [f"lt_{b[0]}"]
    names += [f"{lo}_to_{hi}" for lo, hi in itertools.pairwise(b)]
    names.append(f"ge_{b[-1]}")
    return names


_EPOCH = dt.date(1970, 1, 1)


def human_string(value: Any, type_name: str, transform: Transform) -> str | None:
    """Iceberg's human-readable string of a transformed partition value.

    Parameters
    ----------
    value:
        The transform's result: years/months/days/hours since 1970 for the temporal
        transforms, a bucket or range index, or the source value (identity, truncate).
    type_name:
        The source column's type.
    transform:
        The field's transform.

    Returns
    -------
    str or None
        The string (``None`` for null); bytes are base64, timestamps ISO 8601 (in UTC
        when they carry a zone).
    """
    if value is None:
        return None
    kind = transform.kind
    if kind == "year":
        return f"{1970 + int(value):04d}"
    if kind == "month":
        y, m = divmod(int(value), 12)
        return f"{1970 + y:04d}-{m + 1:02d}"
    if kind == "day":
        return (_EPOCH + dt.timedelta(days=int(value))).isoformat()
    if kind == "hour":
        d, h = divmod(int(value), 24)
        return f"{(_EPOCH + dt.timedelta(days=d)).isoformat()}-{h:02d}"
    if kind == "bucket":
        return str(int(value))
    if kind == "range":
        return range_names(transform.bounds)[int(value)]
    return _identity_string(value)


def _identity_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(dt.UTC).isoformat()
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, float):
        return repr(value)
    return str(value)
