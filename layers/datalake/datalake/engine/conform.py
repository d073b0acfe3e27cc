"""Conformance: source columns -> the table schema's Arrow types, vectorised.

A value that cannot be converted rejects its record. Conversions are tried on whole
arrays; only when one fails is the array bisected to find the offending values, so the
common path costs one cast per column and the rare bad value costs O(log n) casts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datalake.domain.schema import Schema, SchemaField
from datalake.domain.vocabulary import DEFAULT_SCHEMA_POLICY, SchemaPolicy
from datalake.engine.arrow_schema import to_arrow_schema
from datalake.errors import SchemaMismatch, excerpt

_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError,
                ValueError, OverflowError, TypeError)
_UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
TS = pa.timestamp("us")
TSTZ = pa.timestamp("us", tz="UTC")

Converter = Callable[[pa.Array], pa.Array]


def _prepare(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        arr = arr.cast(pa.string())
    elif pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        arr = arr.cast(pa.binary())
    return arr


def _is_str(t: pa.DataType) -> bool:
    return pa.types.is_string(t)


def _nested_to_json(arr: pa.Array) -> pa.Array:
    vals = arr.to_pylist()
    return pa.array([None if v is None else json.dumps(v, default=str, sort_keys=False)
                     for v in vals], pa.string())


def _chain(*fns: Converter) -> Converter:
    def run(a: pa.Array) -> pa.Array:
        err: Exception | None = None
        for fn in fns:
            try:
                return fn(a)
            except _CAST_ERRORS as e:
                if err is None:
                    err = e
        assert err is not None
        raise err

    return run


def _str_to_time(a: pa.Array) -> pa.Array:
    ts = pc.cast(pc.binary_join_element_wise("1970-01-01T", pc.utf8_trim_whitespace(a), ""), TS)
    return pc.cast(ts, pa.time64("us"))


def _uuid(a: pa.Array) -> pa.Array:
    t = pc.utf8_trim_whitespace(a)
    ok = pc.match_substring_regex(t, _UUID_RE)
    if pc.any(pc.invert(ok)).as_py():
        bad = pc.filter(t, pc.invert(ok))[0].as_py()
        raise pa.ArrowInvalid(f"not a UUID: {bad!r}")
    return pc.utf8_lower(t)


def converter_for(src: pa.DataType, target: pa.DataType, type_name: str) -> Converter:
    """A function casting an array of ``src`` to ``target`` that raises on bad values."""
    if type_name == "uuid":
        if _is_str(src):
            return _uuid
        if pa.types.is_fixed_size_binary(src) or pa.types.is_binary(src):
            import uuid as _u

            def from_bytes(a: pa.Array) -> pa.Array:
                return pa.array([None if v is None else str(_u.UUID(bytes=v))
                                 for v in a.to_pylist()], pa.string())

            return from_bytes
        if pa.types.is_extension_type(src):
            return lambda a: _uuid(pc.cast(a.storage, pa.string()))
        return lambda a: _uuid(pc.cast(a, pa.string()))
    if pa.types.is_nested(src):
        if _is_str(target):
            return _nested_to_json
        return lambda a: (_ for _ in ()).throw(pa.ArrowInvalid(f"cannot convert {src} to {target}"))
    if _is_str(src) and not _is_str(target) and not pa.types.is_binary(target):
        if pa.types.is_timestamp(target):
            naive = lambda a: pc.cast(pc.utf8_trim_whitespace(a), TS)  # noqa: E731
            aware = lambda a: pc.cast(pc.utf8_trim_whitespace(a), TSTZ)  # noqa: E731
            if target.tz:
                return _chain(lambda a: pc.cast(aware(a), target),
                              lambda a: pc.cast(naive(a), target))
            return _chain(lambda a: pc.cast(naive(a), target),
                          lambda a: pc.cast(aware(a), target))
        if pa.types.is_time(target):
            return _str_to_time
        return _chain(lambda a: pc.cast(a, target),
                      lambda a: pc.cast(pc.utf8_trim_whitespace(a), target))
    if pa.types.is_timestamp(src) and pa.types.is_timestamp(target):
        opts = pc.CastOptions(target, allow_time_truncate=True)
        return lambda a: pc.cast(a, options=opts)
    if pa.types.is_floating(src) and pa.types.is_floating(target):
        opts = pc.CastOptions(target, allow_float_truncate=True)
        return lambda a: pc.cast(a, options=opts)
    return lambda a: pc.cast(a, target)


def _bisect(arr: pa.Array, fn: Converter, target: pa.DataType
            ) -> tuple[pa.Array, dict[int, str]]:
    """Convert piecewise: halves that convert are kept, single bad values become null."""
    bad: dict[int, str] = {}
    pieces: list[pa.Array] = []

    def rec(lo: int, hi: int) -> None:
        try:
            out = fn(arr.slice(lo, hi - lo))
            if isinstance(out, pa.ChunkedArray):
                out = out.combine_chunks()
            pieces.append(out if out.type == target else out.cast(target))
            return
        except _CAST_ERRORS as e:
            if hi - lo == 1:
                bad[lo] = excerpt(str(e).split("\n")[0])  # it quotes the value
                pieces.append(pa.nulls(1, target))
                return
        if hi - lo <= 8:
            for i in range(lo, hi):
                rec(i, i + 1)
            return
        mid = (lo + hi) // 2
        rec(lo, mid)
        rec(mid, hi)

    rec(0, len(arr))
    return pa.concat_arrays(pieces) if pieces else pa.nulls(0, target), bad


def convert(arr: pa.Array | pa.ChunkedArray, target: pa.DataType,
            type_name: str = "") -> tuple[pa.Array, dict[int, str]]:
    """Convert ``arr`` to ``target``.

    Returns the converted array (null where conversion failed) and ``{index: error}``
    for each non-null source value that could not be converted.
    """
    arr = _prepare(arr)
    src = arr.type
    if src == target and type_name != "uuid":
        return arr, {}
    if pa.types.is_null(src):
        return pa.nulls(len(arr), target), {}
    fn = converter_for(src, target, type_name)
    try:
        out = fn(arr)
        bad: dict[int, str] = {}
    except _CAST_ERRORS:
        out, bad = _bisect(arr, fn, target)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    if out.type != target:
        out = out.cast(target)
    if out.null_count > arr.null_count + len(bad):
        lost = pc.and_(arr.is_valid(), out.is_null())
        for i in np.flatnonzero(lost.to_numpy(zero_copy_only=False)):
            bad.setdefault(int(i), f"value could not be converted to {target}")
    return out, bad


@dataclass
class Rejected:
    """Rejected records of one batch: positions in the batch and a reason each."""

    rows: list[int] = field(default_factory=list)
    columns: list[str | None] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


class Conformer:
    """Maps source columns to schema fields (case-insensitive) and converts batches.

    ``policy``: ``freeze`` -> source columns outside the schema raise
    :class:`SchemaMismatch` (so does a missing required column); ``evolve`` and
    ``discard_columns`` -> such columns are dropped and listed in :attr:`discarded`.
    """

    def __init__(
        self, schema: Schema, *, policy: str = DEFAULT_SCHEMA_POLICY, uri: str = ""
    ) -> None:
        self.schema = schema
        self.fields: list[SchemaField] = list(schema.fields)
        self.arrow_schema = to_arrow_schema(schema)
        self.targets = [f.type for f in self.arrow_schema]
        self.policy = SchemaPolicy.parse(policy)
        self.uri = uri
        self._by_lower = {f.name.lower(): i for i, f in enumerate(self.fields)}
        self.discarded: list[str] = []
        self.source_columns: list[str] = []
        self._seen: set[str] = set()

    def observe(self, columns: list[str], *, complete: bool = True) -> None:
        """Register source column names; enforce the schema policy on new ones.

        ``complete``: the list is the full column set of the source (CSV header, Parquet
        or Avro schema), so missing required columns can be detected.
        """
        new = [c for c in columns if c not in self._seen]
        for c in new:
            self._seen.add(c)
            self.source_columns.append(c)
        extras = [c for c in new if c.lower() not in self._by_lower]
        if extras:
            if self.policy == SchemaPolicy.FREEZE:
                raise SchemaMismatch(
                    f"{self.uri}: source columns not in the table schema: {', '.join(extras)} "
                    "(the table's schema policy is 'freeze')",
                    details={"unexpected_columns": extras},
                )
            self.discarded.extend(extras)
        if complete and self.policy == SchemaPolicy.FREEZE:
            # freeze means the file's columns must be the table's: a missing column fails
            # the batch as an extra one does (JSON Lines, whose keys vary by record, only
            # checks extras).
            lowered = {c.lower() for c in columns}
            missing = [f.name for f in self.fields if f.name.lower() not in lowered]
            if missing:
                raise SchemaMismatch(
                    f"{self.uri}: table columns missing from the source: {', '.join(missing)} "
                    "(the table's schema policy is 'freeze')",
                    details={"missing_columns": missing},
                )

    def source_for(self, columns: list[str]) -> list[str | None]:
        """For each schema field, the matching source column name (or None)."""
        lower: dict[str, str] = {}
        for c in columns:
            lower.setdefault(c.lower(), c)
        return [lower.get(f.name.lower()) for f in self.fields]

    def conform(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Rejected, np.ndarray | None]:
        """Convert a source batch to the table schema.

        Returns the conformed batch (rejected rows removed), the rejections, and the
        keep-mask (None when nothing was rejected).
        """
        n = batch.num_rows
        names = batch.schema.names
        mapping = self.source_for(names)
        arrays: list[pa.Array] = []
        first_error: dict[int, tuple[str, Any, str]] = {}
        for f, target, src_name in zip(self.fields, self.targets, mapping, strict=True):
            if src_name is None:
                out = pa.nulls(n, target)
                bad: dict[int, str] = {}
                src = None
            else:
                src = batch.column(names.index(src_name))
                out, bad = convert(src, target, f.type)
            for i, msg in bad.items():
                if i not in first_error:
                    first_error[i] = (f.name, src[i].as_py() if src is not None else None, msg)
            if not f.nullable and out.null_count:
                for j in np.flatnonzero(out.is_null().to_numpy(zero_copy_only=False)):
                    if int(j) not in first_error:
                        first_error[int(j)] = (f.name, None,
                                               f"required field {f.name!r} is null")
            arrays.append(out)
        rejected = Rejected()
        keep = None
        if first_error:
            keep = np.ones(n, dtype=bool)
            for i in sorted(first_error):
                col, val, msg = first_error[i]
                rejected.rows.append(i)
                rejected.columns.append(col)
                rejected.values.append(val)
                rejected.errors.append(msg)
                keep[i] = False
        out_batch = pa.RecordBatch.from_arrays(arrays, schema=self.arrow_schema)
        if keep is not None:
            out_batch = out_batch.filter(pa.array(keep))
        return out_batch, rejected, keep


def json_safe(v: Any) -> Any:
    """A JSON-serialisable form of a Python value from Arrow."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)

