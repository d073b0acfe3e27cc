"""A specialised Avro block decoder for flat record schemas (Python code generation).

fastavro decodes every record into a dict of Python objects; for a flat record of
primitives (and unions of null with one primitive) this module instead generates, per
schema, one Python loop that walks a block and appends only what Arrow cannot read
in bulk: varint values go to lists, while strings, bytes, fixed and floating-point
values are recorded as byte offsets and gathered afterwards with numpy straight from the
block buffer into Arrow buffers. No per-record dict, no per-value ``str``/``float``
objects. Schemas with nested types fall back to fastavro (``compile_decoder`` returns
None).
"""

from __future__ import annotations

import decimal
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from datalake.engine.avro_varint import read_long
from datalake.errors import CorruptInput

_PRIMS = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

# kinds: "int" (varint), "bool", "f4", "f8", "bin" (length-prefixed), "fixed:N",
#        "enum", "null"


def _kind(t: Any) -> tuple[str, Any] | None:
    """(kind, extra) for a non-union Avro type, or None if unsupported."""
    if isinstance(t, str):
        if t in ("int", "long"):
            return "int", None
        if t == "boolean":
            return "bool", None
        if t == "float":
            return "f4", None
        if t == "double":
            return "f8", None
        if t in ("bytes", "string"):
            return "bin", t
        if t == "null":
            return "null", None
        return None
    if isinstance(t, dict):
        base = t.get("type")
        if base == "enum":
            return "enum", list(t["symbols"])
        if base == "fixed":
            return f"fixed:{int(t['size'])}", t
        if isinstance(base, str) and base in _PRIMS:
            k = _kind(base)
            if k is None:
                return None
            return k[0], (t if t.get("logicalType") else k[1])
    return None


_LOOP = """{i}while True:
{i}    b = buf[pos]; pos += 1
{i}    v |= (b & 0x7F) << s
{i}    if not b & 0x80: break
{i}    s += 7
"""


def _varint(ind: str) -> str:
    """Read an unsigned varint into ``b``."""
    return (f"{ind}b = buf[pos]; pos += 1\n{ind}if b & 0x80:\n{ind}    v = b & 0x7F; s = 7\n"
            + _LOOP.format(i=ind + "    ") + f"{ind}    b = v\n")


def _int(ind: str, k: int) -> str:
    """Append a zigzag varint to column ``k``. One- and two-byte varints (values up to
    +-8191: most years, times, delays and lengths) are decoded inline; longer ones loop."""
    return (f"{ind}b = buf[pos]; pos += 1\n{ind}if b < 0x80:\n{ind}    a{k}(ZZ[b])\n"
            f"{ind}else:\n{ind}    c = buf[pos]; pos += 1\n{ind}    if c < 0x80:\n"
            f"{ind}        v = (b & 0x7F) | (c << 7)\n{ind}    else:\n"
            f"{ind}        v = (b & 0x7F) | ((c & 0x7F) << 7); s = 14\n"
            + _LOOP.format(i=ind + "        ") + f"{ind}    a{k}((v >> 1) ^ -(v & 1))\n")


def _emit_value(kind: str, k: int, ind: str) -> str:
    if kind == "int":
        return _int(ind, k)
    if kind == "bin":
        return _varint(ind) + f"{ind}b >>= 1\n{ind}a{k}(base + pos); l{k}(b); pos += b\n"
    if kind == "enum":
        return _varint(ind) + f"{ind}a{k}(b >> 1)\n"
    if kind == "bool":
        return f"{ind}a{k}(buf[pos]); pos += 1\n"
    if kind == "f8":
        return f"{ind}a{k}(base + pos); pos += 8\n"
    if kind == "f4":
        return f"{ind}a{k}(base + pos); pos += 4\n"
    if kind.startswith("fixed:"):
        n = int(kind.split(":")[1])
        return f"{ind}a{k}(base + pos); pos += {n}\n"
    if kind == "null":
        return f"{ind}a{k}(None)\n"
    raise AssertionError(kind)


def _null_value(kind: str, k: int, ind: str) -> str:
    if kind in ("f8", "f4", "bin") or kind.startswith("fixed:"):
        out = f"{ind}a{k}(-1)\n"
        if kind == "bin":
            out += f"{ind}l{k}(0)\n"
        return out
    return f"{ind}a{k}(None)\n"


class FieldSpec:
    def __init__(self, name: str, kind: str, extra: Any, nullable: bool) -> None:
        self.name = name
        self.kind = kind
        self.extra = extra
        self.nullable = nullable


def compile_decoder(schema: dict[str, Any]) -> tuple[Callable[..., int], list[FieldSpec]] | None:
    """Generate a block decoder for a flat record schema, or None if unsupported."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    specs: list[FieldSpec] = []
    body = []
    for k, f in enumerate(schema.get("fields", [])):
        t = f["type"]
        if isinstance(t, list):
            if len(t) != 2 or "null" not in t:
                return None
            null_idx = t.index("null")
            other = t[1 - null_idx]
            kd = _kind(other)
            if kd is None or kd[0] == "null":
                return None
            specs.append(FieldSpec(f["name"], kd[0], kd[1], True))
            body.append("        b = buf[pos]; pos += 1\n" +
                        f"        if b == {2 * null_idx}:\n" +
                        _null_value(kd[0], k, "            ") +
                        "        else:\n" + _emit_value(kd[0], k, "            "))
        else:
            kd = _kind(t)
            if kd is None:
                return None
            specs.append(FieldSpec(f["name"], kd[0], kd[1], False))
            body.append(_emit_value(kd[0], k, "        "))
    binds = []
    for k, s in enumerate(specs):
        binds.append(f"    a{k} = cols[{k}].append\n")
        if s.kind == "bin":
            binds.append(f"    l{k} = lens[{k}].append\n")
    src = ("def decode(buf, n, base, cols, lens):\n    pos = 0\n" + "".join(binds) +
           "    for _ in range(n):\n" + "".join(body) + "    return pos\n")
    ns: dict[str, Any] = {"ZZ": tuple((b >> 1) ^ -(b & 1) for b in range(128))}
    exec(compile(src, "<avro-decoder>", "exec"), ns)
    return ns["decode"], specs


def _validity(positions: np.ndarray) -> tuple[np.ndarray, Any]:
    valid = positions >= 0
    if valid.all():
        return valid, None
    return valid, pa.array(valid).buffers()[1]


def _gather(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    idx = starts[:, None] + np.arange(width, dtype=np.int64)
    return data[idx].reshape(-1)


def build_column(spec: FieldSpec, values: list[Any], lens: list[int], data: np.ndarray,
                 arrow_type: pa.DataType | None) -> pa.Array:
    kind = spec.kind
    n = len(values)
    if kind in ("int", "null"):
        at = arrow_type if arrow_type is not None else pa.int64()
        phys = pa.int32() if at in (pa.int32(), pa.date32(), pa.time32("ms")) else pa.int64()
        arr = pa.array(values, phys)
        return arr if at == phys else arr.view(at)
    if kind == "bool":
        return pa.array([None if v is None else bool(v) for v in values], pa.bool_()) \
            if spec.nullable else pa.array(np.array(values, dtype=bool))
    if kind == "enum":
        idx = pa.array(values, pa.int32())
        return pa.DictionaryArray.from_arrays(idx, pa.array(spec.extra, pa.string())).cast(
            pa.string())
    starts = np.array(values, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    valid, bitmap = _validity(starts)
    if kind in ("f8", "f4"):
        width = 8 if kind == "f8" else 4
        safe = np.where(valid, starts, 0)
        raw = _gather(data, safe, width)
        vals = raw.view("<f8" if width == 8 else "<f4")
        return pa.Array.from_buffers(pa.float64() if width == 8 else pa.float32(), n,
                                     [bitmap, pa.py_buffer(vals)])
    if kind.startswith("fixed:"):
        width = int(kind.split(":")[1])
        safe = np.where(valid, starts, 0)
        raw = _gather(data, safe, width)
        lt = spec.extra.get("logicalType") if isinstance(spec.extra, dict) else None
        arr = pa.Array.from_buffers(pa.binary(width), n, [bitmap, pa.py_buffer(raw)])
        if lt == "decimal":
            return _decimal(arr, spec.extra)
        return arr.cast(pa.binary())
    # length-prefixed bytes / string
    ln = np.array(lens, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    ln = np.where(valid, ln, 0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(ln, out=offsets[1:])
    total = int(offsets[-1])
    if total:
        idx = np.repeat(np.where(valid, starts, 0) - offsets[:-1], ln) + np.arange(total)
        payload = data[idx]
    else:
        payload = np.zeros(0, dtype=np.uint8)
    if total < 2**31:
        off: np.ndarray = offsets.astype(np.int32)
        typ_s, typ_b = pa.string(), pa.binary()
    else:  # pragma: no cover - > 2 GiB of strings in one batch
        typ_s, typ_b, off = pa.large_string(), pa.large_binary(), offsets
    is_string = spec.extra == "string" or (isinstance(spec.extra, dict) and
                                           spec.extra.get("type") == "string")
    arr = pa.Array.from_buffers(typ_s if is_string else typ_b, n,
                                [bitmap, pa.py_buffer(off), pa.py_buffer(payload)])
    if is_string:
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid as e:
            raise CorruptInput(f"invalid UTF-8 in Avro string field {spec.name!r}") from e
        return arr
    if isinstance(spec.extra, dict) and spec.extra.get("logicalType") == "decimal":
        return _decimal(arr, spec.extra)
    return arr


def _decimal(arr: pa.Array, t: dict[str, Any]) -> pa.Array:
    p, s = int(t["precision"]), int(t.get("scale", 0))
    vals = [None if v is None else decimal.Decimal(int.from_bytes(v, "big", signed=True)
                                                   ).scaleb(-s) for v in arr.to_pylist()]
    return pa.array(vals, pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s))


def decompress(codec: str, data: bytes) -> bytes:
    if codec == "null":
        return data
    if codec == "deflate":
        return zlib.decompress(data, -15)
    if codec == "snappy":
        import cramjam

        return bytes(cramjam.snappy.decompress_raw(data[:-4]))
    if codec == "zstandard":
        import cramjam

        return bytes(cramjam.zstd.decompress(data))
    raise CorruptInput(f"unsupported Avro codec {codec!r}")


def iter_blocks(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """(record count, compressed data) for each raw block from ``owned_blocks``."""
    for raw in chunks:
        count, p = read_long(raw, 0)
        size, p = read_long(raw, p)
        yield count, raw[p : p + size]
