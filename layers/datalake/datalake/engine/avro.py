"""Avro object container files: header parsing, block-aligned slices, fast decoding.

A split owns the blocks that start inside its byte range; block starts are found by the
file's 16-byte sync marker. The owned blocks are streamed behind a re-encoded copy of
the file header into fastavro, so each split is decoded as a small valid Avro file.

Speed: timestamp/date/time logical types are stripped from the schema handed to
fastavro (it then returns plain ints instead of building ``datetime`` objects, the
costliest part of decoding) and converted by Arrow casts; records are turned into
columns with ``operator.itemgetter`` + ``pa.array`` instead of ``Table.from_pylist``.
"""

from __future__ import annotations

import copy
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, BinaryIO

import pyarrow as pa

from datalake.engine.avro_varint import read_long, write_long
from datalake.engine.store import ObjectStore
from datalake.errors import CorruptInput

MAGIC = b"Obj\x01"


@dataclass
class AvroHeader:
    schema: dict[str, Any]
    codec: str
    sync: bytes
    end: int  # offset of the first block
    meta: dict[str, bytes]


def parse_header(data: bytes, uri: str = "") -> AvroHeader:
    """Parse an Avro header from the start of a file (raises IndexError if truncated)."""
    if data[:4] != MAGIC:
        raise CorruptInput(f"{uri} is not an Avro object container file (bad magic)")
    pos = 4
    meta: dict[str, bytes] = {}
    while True:
        count, pos = read_long(data, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _size, pos = read_long(data, pos)
        for _ in range(count):
            klen, pos = read_long(data, pos)
            key = data[pos : pos + klen].decode()
            pos += klen
            vlen, pos = read_long(data, pos)
            if pos + vlen > len(data):
                raise IndexError
            meta[key] = data[pos : pos + vlen]
            pos += vlen
    if pos + 16 > len(data):
        raise IndexError
    sync = data[pos : pos + 16]
    try:
        schema = json.loads(meta["avro.schema"])
    except (KeyError, ValueError) as e:
        raise CorruptInput(f"{uri}: Avro header has no valid schema") from e
    codec = meta.get("avro.codec", b"null").decode() or "null"
    return AvroHeader(schema=schema, codec=codec, sync=sync, end=pos + 16, meta=meta)


def read_header(store: ObjectStore, bucket: str, key: str, size: int,
                etag: str | None = None) -> AvroHeader:
    """Read and parse an Avro file's header (64 KiB first, more if it is longer).

    Parameters
    ----------
    store, bucket, key:
        Where the file is.
    size:
        The file's size (no read goes past it).
    etag:
        The planned version: every read is conditional on it, so the header cannot come
        from another version of the file than the blocks read later.

    Raises
    ------
    CorruptInput
        When the file is not Avro or its header is truncated.
    SourceChanged
        When the file is no longer the ``etag`` version.
    """
    uri = f"s3://{bucket}/{key}"
    n = 64 * 1024
    while True:
        data = store.get_range(bucket, key, 0, min(size, n), etag=etag)
        try:
            return parse_header(data, uri)
        except IndexError:
            if n >= size:
                raise CorruptInput(f"{uri}: truncated Avro header") from None
            n *= 4
        except UnicodeDecodeError as e:
            raise CorruptInput(f"{uri}: invalid Avro header: {e}") from e


_LOGICAL_STRIP = {"timestamp-millis", "timestamp-micros", "timestamp-nanos",
                  "local-timestamp-millis", "local-timestamp-micros", "local-timestamp-nanos",
                  "date", "time-millis", "time-micros"}


def _plain(t: Any) -> tuple[Any, pa.DataType | None]:
    """The schema handed to fastavro for a field type and the Arrow type to build."""
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        if len(branches) == 1:
            inner, at = _plain(branches[0])
            return [inner if b != "null" else "null" for b in t], at
        return t, None
    if isinstance(t, dict):
        lt = t.get("logicalType")
        base = t.get("type")
        if lt in _LOGICAL_STRIP and base in ("int", "long"):
            unit = {"millis": "ms", "micros": "us", "nanos": "ns"}[lt.rsplit("-", 1)[1]] \
                if lt != "date" else None
            if lt == "date":
                at = pa.date32()
            elif lt.startswith("time-"):
                at = pa.time32("ms") if unit == "ms" else pa.time64("us")
            elif lt.startswith("local-"):
                at = pa.timestamp(unit)
            else:
                at = pa.timestamp(unit, tz="UTC")
            return base, at
        if lt == "decimal":
            return t, pa.decimal128(int(t["precision"]), int(t.get("scale", 0)))
        if lt == "uuid" and base == "string":
            return "string", pa.string()
        if base == "enum":
            return t, pa.string()
        if base == "fixed":
            return t, pa.binary()
        if isinstance(base, str) and base in _PRIM:
            return t, _PRIM[base]
        return t, None
    if isinstance(t, str) and t in _PRIM:
        return t, _PRIM[t]
    return t, None


_PRIM = {"boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
         "double": pa.float64(), "bytes": pa.binary(), "string": pa.string(), "null": pa.null()}

_PHYS = {pa.date32(): pa.int32(), pa.time32("ms"): pa.int32()}


class AvroDecoder:
    """Turns a header and a stream of owned blocks into Arrow record batches."""

    def __init__(self, header: AvroHeader, uri: str = "", *, fast: bool = True) -> None:
        self.header = header
        self.fast = fast
        self.uri = uri
        schema = copy.deepcopy(header.schema)
        if not (isinstance(schema, dict) and schema.get("type") == "record"):
            raise CorruptInput(f"{uri}: top-level Avro schema must be a record")
        self.names: list[str] = []
        self.types: list[pa.DataType | None] = []
        for f in schema["fields"]:
            plain, at = _plain(f["type"])
            f["type"] = plain
            self.names.append(f["name"])
            self.types.append(at)
        meta = dict(header.meta)
        meta["avro.schema"] = json.dumps(schema).encode()
        out = bytearray(MAGIC)
        out += write_long(len(meta))
        for k, v in meta.items():
            kb = k.encode()
            out += write_long(len(kb)) + kb + write_long(len(v)) + v
        out += write_long(0) + header.sync
        self.header_bytes = bytes(out)
        self._getters = [itemgetter(n) for n in self.names]

    def to_batch(self, records: list[dict[str, Any]]) -> pa.RecordBatch:
        arrays = []
        for get, at in zip(self._getters, self.types, strict=True):
            vals = list(map(get, records))
            arrays.append(_column(vals, at))
        return pa.RecordBatch.from_arrays(arrays, names=self.names)

    def batches(self, blocks: Iterator[bytes], batch_size: int) -> Iterator[pa.RecordBatch]:
        """Record batches of about ``batch_size`` records (whole blocks per batch on the
        fast path)."""
        from datalake.engine.avro_fast import compile_decoder

        compiled = compile_decoder(self.header.schema) if self.fast else None
        if compiled is not None:
            yield from self._batches_fast(blocks, batch_size, *compiled)
        else:
            yield from self._batches_fastavro(blocks, batch_size)

    def _batches_fast(self, blocks: Iterator[bytes], batch_size: int, decode: Any,
                      specs: list[Any]) -> Iterator[pa.RecordBatch]:
        import numpy as np

        from datalake.engine.avro_fast import build_column, decompress, iter_blocks

        codec = self.header.codec

        def fresh() -> tuple[list[list[Any]], list[list[int]]]:
            return [[] for _ in specs], [[] for _ in specs]

        cols, lens = fresh()
        bufs: list[bytes] = []
        base = count = 0

        def build() -> pa.RecordBatch:
            data = np.frombuffer(b"".join(bufs), dtype=np.uint8)
            arrays = [build_column(sp, cols[k], lens[k], data, self.types[k])
                      for k, sp in enumerate(specs)]
            return pa.RecordBatch.from_arrays(arrays, names=self.names)

        try:
            for n, comp in iter_blocks(blocks):
                data = decompress(codec, comp)
                try:
                    end = decode(data, n, base, cols, lens)
                except IndexError:
                    raise CorruptInput(f"{self.uri}: truncated Avro block") from None
                if end != len(data):
                    raise CorruptInput(f"{self.uri}: Avro block size does not match its "
                                       "records")
                bufs.append(data)
                base += len(data)
                count += n
                if count >= batch_size:
                    yield build()
                    cols, lens = fresh()
                    bufs, base, count = [], 0, 0
            if count:
                yield build()
        except CorruptInput:
            raise
        except (ValueError, zlib.error, OSError) as e:
            raise CorruptInput(f"{self.uri}: cannot decode Avro data: {e}") from e

    def _batches_fastavro(self, blocks: Iterator[bytes], batch_size: int
                          ) -> Iterator[pa.RecordBatch]:
        import fastavro

        from datalake.engine.streams import IterStream

        def chain() -> Iterator[bytes]:
            yield self.header_bytes
            yield from blocks

        stream = IterStream(chain())
        try:
            reader: Any = fastavro.reader(stream)  # type: ignore[arg-type]
            buf: list[dict[str, Any]] = []
            for rec in reader:
                buf.append(rec)
                if len(buf) >= batch_size:
                    yield self.to_batch(buf)
                    buf = []
            if buf:
                yield self.to_batch(buf)
        except CorruptInput:
            raise
        except (ValueError, EOFError, KeyError, TypeError, IndexError, OSError,
                StopIteration) as e:
            raise CorruptInput(f"{self.uri}: cannot decode Avro data: {e}") from e


def _column(vals: list[Any], at: pa.DataType | None) -> pa.Array:
    if at is None:
        try:
            return pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if v is None else json.dumps(v, default=str) for v in vals],
                            pa.string())
    phys = _PHYS.get(at)
    if phys is None and (pa.types.is_timestamp(at) or pa.types.is_time64(at)):
        phys = pa.int64()
    if phys is not None:
        return pa.array(vals, phys).view(at)
    return pa.array(vals, at)


def _read_exact(raw: BinaryIO, n: int) -> bytes:
    data = raw.read(n)
    if len(data) < n:
        parts = [data]
        got = len(data)
        while got < n:
            more = raw.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


def _read_varint(raw: BinaryIO) -> tuple[int, bytes] | None:
    out = bytearray()
    while True:
        b = raw.read(1)
        if not b:
            if out:
                raise CorruptInput("truncated Avro block header")
            return None
        out += b
        if not b[0] & 0x80:
            break
        if len(out) > 10:
            raise CorruptInput("invalid Avro varint")
    val, _ = read_long(bytes(out), 0)
    return val, bytes(out)


def owned_blocks(raw: Any, header: AvroHeader, start: int, end: int, size: int,
                 uri: str = "", chunk: int = 2**20) -> Iterator[bytes]:
    """Yield the raw bytes (count, size, data, sync) of the blocks starting in
    ``[start, end)``. ``raw`` must be seekable; it is positioned here."""
    if start <= header.end:
        pos = header.end
        raw.seek(pos)
    else:
        # find the first sync marker ending at or after `start`
        scan = start - 16
        raw.seek(scan)
        tail = b""
        tail_pos = scan
        pos = -1
        while True:
            data = raw.read(chunk)
            if not data:
                return
            buf = tail + data
            i = buf.find(header.sync)
            if i >= 0:
                pos = tail_pos + i + 16
                break
            keep = min(len(buf), 15)
            tail_pos += len(buf) - keep
            tail = buf[len(buf) - keep:]
            if tail_pos >= end:
                return
        raw.seek(pos)
    while pos < end and pos < size:
        c = _read_varint(raw)
        if c is None:
            return
        count, cb = c
        s = _read_varint(raw)
        if s is None or count < 0:
            raise CorruptInput(f"{uri}: corrupt Avro block at offset {pos}")
        nbytes, sb = s
        if nbytes < 0:
            raise CorruptInput(f"{uri}: corrupt Avro block at offset {pos}")
        body = _read_exact(raw, nbytes + 16)
        if len(body) < nbytes + 16 or body[-16:] != header.sync:
            raise CorruptInput(f"{uri}: Avro block at offset {pos} is truncated or has a bad "
                               "sync marker")
        yield cb + sb + body
        pos += len(cb) + len(sb) + len(body)


def decode_bytes(data: bytes, batch_size: int = 10_000) -> pa.Table:
    """Decode a whole in-memory Avro file (tests, benchmarks)."""
    header = parse_header(data)
    dec = AvroDecoder(header)
    raw = io.BytesIO(data)
    batches = list(dec.batches(owned_blocks(raw, header, 0, len(data), len(data)), batch_size))
    if not batches:
        return pa.table({n: pa.array([], t or pa.null()) for n, t in zip(
            dec.names, dec.types, strict=True)})
    return pa.Table.from_batches(batches)
