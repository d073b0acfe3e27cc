"""Partition transforms, vectorised (pyarrow.compute + numpy).

Transform results follow Apache Iceberg: ``year``/``month``/``day``/``hour`` are
years/months/days/hours since 1970 (ints), ``bucket[N]`` is
``(murmur3_x86_32(serialise(v)) & 0x7fffffff) % N``, ``truncate[W]`` keeps the type.
``range[b1,...]`` (ours) gives the index of the range a value falls in.

Path values (the ``value`` in ``name=value``) are Iceberg's human strings of these
results; their rules (:func:`~datalake.domain.partitioning.human_string`, range names,
Hive escaping, the null partition) are the domain's, in :mod:`datalake.domain.partitioning`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import uuid as _uuid
from typing import Any

import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datalake.domain.partitioning import Transform
from datalake.domain.types import DecimalType, parse_type
from datalake.errors import InvalidInput

EPOCH = dt.date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000

# ------------------------------------------------------------------------- murmur3

_C1 = np.uint32(0xCC9E2D51)
_C2 = np.uint32(0x1B873593)
_M5 = np.uint32(5)
_N1 = np.uint32(0xE6546B64)
_F1 = np.uint32(0x85EBCA6B)
_F2 = np.uint32(0xC2B2AE35)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def murmur3_long(values: np.ndarray) -> np.ndarray:
    """Vectorised murmur3_x86_32 (seed 0) of 8-byte little-endian longs -> int32.

    This is Iceberg's ``hashLong``, used for int, long, date, time and timestamps.
    """
    u = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    h = np.zeros(u.shape, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for k in ((u & np.uint64(0xFFFFFFFF)).astype(np.uint32),
                  (u >> np.uint64(32)).astype(np.uint32)):
            k = k * _C1
            k = _rotl(k, 15)
            k = k * _C2
            h ^= k
            h = _rotl(h, 13)
            h = h * _M5 + _N1
        h ^= np.uint32(8)
        h ^= h >> np.uint32(16)
        h = h * _F1
        h ^= h >> np.uint32(13)
        h = h * _F2
        h ^= h >> np.uint32(16)
    return h.view(np.int32)


def _decimal_bytes(unscaled: int) -> bytes:
    """Minimal big-endian two's-complement bytes (Java's BigInteger.toByteArray)."""
    bits = unscaled.bit_length() if unscaled >= 0 else (~unscaled).bit_length()
    return unscaled.to_bytes(bits // 8 + 1, "big", signed=True)


def iceberg_hash(value: Any, type_name: str) -> int:
    """Iceberg's 32-bit hash of one Python value (reference implementation, scalar)."""
    t = parse_type(type_name)
    if isinstance(t, DecimalType):
        d = decimal.Decimal(value)
        unscaled = int(d.scaleb(t.scale).to_integral_value())
        return mmh3.hash(_decimal_bytes(unscaled), 0, signed=True)
    if t in ("int", "long"):
        return int(murmur3_long(np.array([int(value)]))[0])
    if t == "date":
        days = (value - EPOCH).days if isinstance(value, dt.date) else int(value)
        return int(murmur3_long(np.array([days]))[0])
    if t == "time":
        if isinstance(value, dt.time):
            value = ((value.hour * 60 + value.minute) * 60 + value.second) * 10**6 + \
                value.microsecond
        return int(murmur3_long(np.array([int(value)]))[0])
    if t in ("timestamp", "timestamptz"):
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            delta = value - dt.datetime(1970, 1, 1)
            value = (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds
        return int(murmur3_long(np.array([int(value)]))[0])
    if t == "string":
        return mmh3.hash(str(value).encode("utf-8"), 0, signed=True)
    if t == "uuid":
        u = value if isinstance(value, _uuid.UUID) else _uuid.UUID(str(value))
        return mmh3.hash(u.bytes, 0, signed=True)
    if t == "binary" or str(t).startswith("fixed["):
        return mmh3.hash(bytes(value), 0, signed=True)
    raise InvalidInput(f"bucket transform does not apply to {type_name}")


# -------------------------------------------------------------------- helpers


def _ints(arr: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Physical int64 values of an int/date/time/timestamp array, and its null mask."""
    t = arr.type
    if pa.types.is_timestamp(t):
        if t.unit != "us":
            arr = arr.cast(pa.timestamp("us", t.tz), safe=False)
        phys = arr.view(pa.int64()) if hasattr(arr, "view") else arr.cast(pa.int64())
    elif pa.types.is_date32(t):
        phys = arr.view(pa.int32())
    elif pa.types.is_time(t):
        phys = arr.cast(pa.time64("us")).view(pa.int64())
    else:
        phys = arr
    nulls = None
    if arr.null_count:
        nulls = arr.is_null().to_numpy(zero_copy_only=False)
        phys = phys.fill_null(0)
    return phys.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), nulls


def _from_np(values: np.ndarray, nulls: np.ndarray | None, typ: pa.DataType) -> pa.Array:
    return pa.array(values, type=typ, mask=nulls)


def _per_unique(arr: pa.Array, fn: Any, out_type: pa.DataType) -> pa.Array:
    """Apply a scalar Python function once per distinct value (dictionary encoding)."""
    enc = pc.dictionary_encode(arr)
    dictionary = enc.dictionary.to_pylist()
    mapped = pa.array([fn(v) for v in dictionary], type=out_type)
    return pc.take(mapped, enc.indices)


def _temporal(arr: pa.Array) -> pa.Array:
    t = arr.type
    if not (pa.types.is_date(t) or pa.types.is_timestamp(t)):
        raise InvalidInput(f"year/month/day/hour transforms need a date or timestamp, got {t}")
    if pa.types.is_date64(t):
        arr = arr.cast(pa.date32())
    return arr


# --------------------------------------------------------------------- transforms


def apply_transform(arr: pa.Array, type_name: str, transform: Transform) -> pa.Array:
    """The transformed values of a column (Iceberg semantics; nulls stay null)."""
    kind = transform.kind
    if kind == "identity":
        return arr
    if kind == "void":
        return pa.nulls(len(arr), pa.int32())
    if kind in ("year", "month"):
        arr = _temporal(arr)
        years = pc.subtract(pc.year(arr), 1970)
        if kind == "year":
            return years.cast(pa.int32())
        months = pc.add(pc.multiply(years, 12), pc.subtract(pc.month(arr), 1))
        return months.cast(pa.int32())
    if kind in ("day", "hour"):
        arr = _temporal(arr)
        if pa.types.is_date32(arr.type):
            vals, nulls = _ints(arr)
            res = vals if kind == "day" else vals * 24
        else:
            vals, nulls = _ints(arr)
            res = vals // (_US_PER_DAY if kind == "day" else _US_PER_HOUR)
        return _from_np(res.astype(np.int32 if kind == "day" else np.int64), nulls,
                        pa.int32() if kind == "day" else pa.int64())
    if kind == "bucket":
        return bucket(arr, type_name, int(transform.param or 1))
    if kind == "truncate":
        return truncate(arr, type_name, int(transform.param or 1))
    if kind == "range":
        return range_index(arr, transform.bounds)
    raise InvalidInput(f"unknown transform {transform}")


def bucket_hashes(arr: pa.Array, type_name: str) -> pa.Array:
    """Iceberg 32-bit hashes of a column (int32 array, null where the value is null)."""
    t = parse_type(type_name)
    at = arr.type
    if isinstance(t, DecimalType):
        scale = t.scale

        def h_dec(v: decimal.Decimal) -> int | None:
            if v is None:
                return None
            unscaled = int(v.scaleb(scale).to_integral_value())
            return mmh3.hash(_decimal_bytes(unscaled), 0, signed=True)

        return _per_unique(arr, h_dec, pa.int32())
    if t in ("int", "long", "date", "time", "timestamp", "timestamptz") and (
        pa.types.is_integer(at) or pa.types.is_temporal(at)
    ):
        vals, nulls = _ints(arr)
        return _from_np(murmur3_long(vals), nulls, pa.int32())
    if t == "uuid":
        return _per_unique(arr, lambda v: None if v is None else mmh3.hash(
            _uuid.UUID(str(v)).bytes, 0, signed=True), pa.int32())
    if t == "string" or pa.types.is_string(at) or pa.types.is_large_string(at):
        return _per_unique(arr, lambda v: None if v is None else mmh3.hash(
            v.encode("utf-8"), 0, signed=True), pa.int32())
    if t == "binary" or pa.types.is_binary(at):
        return _per_unique(arr, lambda v: None if v is None else mmh3.hash(
            v, 0, signed=True), pa.int32())
    raise InvalidInput(f"bucket transform does not apply to {type_name}")


def bucket(arr: pa.Array, type_name: str, n: int) -> pa.Array:
    """Iceberg's ``bucket[N]``: ``(hash & Integer.MAX_VALUE) % N``."""
    h = bucket_hashes(arr, type_name)
    return _mod(pc.bit_wise_and(h, 0x7FFFFFFF), n)


def _mod(a: pa.Array, n: int) -> pa.Array:
    vals = a.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    nulls = a.is_null().to_numpy(zero_copy_only=False) if a.null_count else None
    return _from_np((vals % n).astype(np.int32), nulls, pa.int32())


def truncate(arr: pa.Array, type_name: str, w: int) -> pa.Array:
    """Iceberg's ``truncate[W]``: ints ``v - (v mod W)``, strings the first W code
    points, binary the first W bytes, decimals the unscaled value truncated."""
    t = parse_type(type_name)
    at = arr.type
    if isinstance(t, DecimalType):
        scale = t.scale

        def tdec(v: decimal.Decimal) -> decimal.Decimal | None:
            if v is None:
                return None
            u = int(v.scaleb(scale).to_integral_value())
            u -= u % w
            return decimal.Decimal(u).scaleb(-scale)

        return _per_unique(arr, tdec, at)
    if pa.types.is_integer(at):
        vals, nulls = _ints(arr)
        return _from_np(vals - np.mod(vals, w), nulls, at)
    if pa.types.is_string(at) or pa.types.is_large_string(at):
        return pc.utf8_slice_codeunits(arr, 0, w)
    if pa.types.is_binary(at) or pa.types.is_large_binary(at):
        return pc.binary_slice(arr, 0, w)
    raise InvalidInput(f"truncate transform does not apply to {type_name}")


def parse_bounds(bounds: tuple[str, ...], typ: pa.DataType) -> list[Any]:
    """Range boundaries converted to the column's type (Python scalars)."""
    from datalake.engine.conform import convert

    raw = pa.array(list(bounds), pa.string())
    out, bad = convert(raw, typ)
    if bad:
        i = min(bad)
        raise InvalidInput(f"range boundary {bounds[i]!r} is not a valid {typ}: {bad[i]}")
    vals = out.to_pylist()
    if any(a >= b for a, b in itertools.pairwise(vals)):
        raise InvalidInput(f"range boundaries must be strictly ascending: {list(bounds)}")
    return vals


def range_index(arr: pa.Array, bounds: tuple[str, ...]) -> pa.Array:
    """Index of the range each value falls in: ``v < b1`` -> 0, ``b1 <= v < b2`` -> 1 ..."""
    vals = parse_bounds(bounds, arr.type)
    idx = None
    for b in vals:
        ge = pc.greater_equal(arr, pa.scalar(b, arr.type)).cast(pa.int32())
        idx = ge if idx is None else pc.add(idx, ge)
    assert idx is not None
    return idx
