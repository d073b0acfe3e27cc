"""The generated Avro block decoder equals fastavro, for every supported type."""

from __future__ import annotations

import decimal
import io
import uuid

import fastavro
import pyarrow as pa
import pytest

from datalake.engine.avro import AvroDecoder, owned_blocks, parse_header
from datalake.engine.avro_fast import compile_decoder
from datalake.errors import CorruptInput

SCHEMA = {"type": "record", "name": "r", "fields": [
    {"name": "l", "type": "long"},
    {"name": "i", "type": ["null", "int"]},
    {"name": "b", "type": ["boolean", "null"]},
    {"name": "f", "type": "float"},
    {"name": "d", "type": ["null", "double"]},
    {"name": "s", "type": ["null", "string"]},
    {"name": "by", "type": "bytes"},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
    {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
    {"name": "dec", "type": ["null", {"type": "bytes", "logicalType": "decimal",
                                      "precision": 12, "scale": 3}]},
    {"name": "decf", "type": {"type": "fixed", "name": "G", "size": 8,
                              "logicalType": "decimal", "precision": 12, "scale": 2}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "dt", "type": ["null", {"type": "int", "logicalType": "date"}]},
    {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "big", "type": "long"},
]}


def _rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append({
            "l": i * 7919 - 10**6, "i": None if i % 4 == 0 else -i, "b": None if i % 5 == 0
            else bool(i % 2), "f": i / 4, "d": None if i % 3 == 0 else i * 1.5e10,
            "s": None if i % 6 == 0 else "é" * (i % 70), "by": bytes(range(i % 9)),
            "e": "ABC"[i % 3], "fx": bytes([i % 256, 1, 2]),
            "dec": None if i % 7 == 0 else decimal.Decimal(i * 1001 - 50000).scaleb(-3),
            "decf": decimal.Decimal(-i * 37).scaleb(-2),
            "ts": 1_500_000_000_000 + i * 1000, "dt": None if i % 8 == 0 else 17000 + i,
            "u": str(uuid.UUID(int=i * 12345)), "big": (-1) ** i * 2**62 + i,
        })
    return out


def _decode(data: bytes, fast: bool) -> pa.Table:
    h = parse_header(data)
    dec = AvroDecoder(h, fast=fast)
    bs = list(dec.batches(owned_blocks(io.BytesIO(data), h, 0, len(data), len(data)), 100))
    return pa.Table.from_batches(bs)


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_fast_decoder_equals_fastavro(codec):
    buf = io.BytesIO()
    rows = _rows(700)
    fastavro.writer(buf, fastavro.parse_schema(SCHEMA), rows, codec=codec, sync_interval=900)
    data = buf.getvalue()
    assert compile_decoder(SCHEMA) is not None
    fast, slow = _decode(data, True), _decode(data, False)
    assert fast.num_rows == 700
    for name in fast.column_names:
        a, b = fast.column(name), slow.column(name)
        if a.type != b.type:
            b = b.cast(a.type)
        assert a.equals(b), name
    assert fast.column("s").to_pylist()[:3] == [None, "é", "éé"]
    assert fast.column("e").to_pylist()[:3] == ["A", "B", "C"]


def test_nested_schemas_fall_back_to_fastavro():
    schema = {"type": "record", "name": "r", "fields": [
        {"name": "a", "type": {"type": "array", "items": "long"}},
        {"name": "m", "type": ["null", "string", "long"]}]}
    assert compile_decoder(schema) is None
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [{"a": [1, 2], "m": "x"}, {"a": [], "m": 3}])
    t = _decode(buf.getvalue(), True)
    assert t.column("a").to_pylist() == [[1, 2], []]


def test_truncated_block_is_corrupt():
    buf = io.BytesIO()
    fastavro.writer(buf, SCHEMA, _rows(50))
    data = bytearray(buf.getvalue())
    # corrupt the record data of the first block but keep its framing intact
    h = parse_header(bytes(data))
    for i in range(h.end + 4, h.end + 40):
        data[i] = 0xFF
    with pytest.raises(CorruptInput):
        _decode(bytes(data), True)


def test_varints_at_every_length_boundary_decode_exactly():
    edges = [0, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 2**20, -(2**20),
             2**31 - 1, -(2**31), 2**62, -(2**63), 2**63 - 1]
    schema = {"type": "record", "name": "v", "fields": [
        {"name": "x", "type": "long"}, {"name": "n", "type": ["null", "long"]},
        {"name": "i", "type": "int"}]}
    rows = [{"x": v, "n": None if k % 3 == 0 else v,
             "i": max(-(2**31), min(2**31 - 1, v))} for k, v in enumerate(edges)]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), rows)
    t = _decode(buf.getvalue(), True)
    assert t.column("x").to_pylist() == edges
    assert t.column("n").to_pylist() == [r["n"] for r in rows]
    assert t.column("i").to_pylist() == [r["i"] for r in rows]
