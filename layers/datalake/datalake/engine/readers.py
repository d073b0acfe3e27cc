"""Streaming readers: one split in, raw Arrow record batches out.

Every reader yields :class:`SourceBatch` objects of at most ``batch_size`` records and
keeps ``bytes_read`` (source bytes consumed). Structural problems (bytes that are not
the format at all) raise :class:`CorruptInput`; records with the wrong number of CSV
fields come back as ``malformed`` rejections.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pj

from datalake.domain.types import DecimalType, parse_type
from datalake.domain.vocabulary import SourceFormat
from datalake.engine.conform import Conformer
from datalake.engine.splits import Split, csv_options, read_csv_header
from datalake.engine.store import ObjectStore
from datalake.engine.streams import CountingReader, json_objects, open_at, read_line_range
from datalake.errors import CorruptInput, excerpt

_COL_ERR = re.compile(r"In CSV column #(\d+)")


@dataclass
class SourceBatch:
    batch: pa.RecordBatch
    #: index of the batch's first record: within the object when the split starts at
    #: byte 0 (or is a Parquet split), else within the split (see ``ingest``)
    row0: int
    #: structurally malformed records: (row or None, raw text, error)
    malformed: list[tuple[int | None, str, str]] = field(default_factory=list)


def _slices(batch: pa.RecordBatch, size: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    n = batch.num_rows
    if n <= size:
        yield 0, batch
        return
    for off in range(0, n, size):
        yield off, batch.slice(off, min(size, n - off))


def _decompressed(raw: Any, compression: str | None) -> Any:
    if compression == "gzip":
        return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "gzip")
    if compression:
        raise CorruptInput(f"unsupported compression {compression!r}")
    return raw


class BaseReader:
    def __init__(self, split: Split, store: ObjectStore, options: dict[str, Any],
                 conformer: Conformer, batch_size: int) -> None:
        self.split = split
        self.store = store
        self.options = options
        self.conformer = conformer
        self.batch_size = max(1, int(batch_size))
        self._counter: CountingReader | None = None
        self._bytes_done = 0

    @property
    def bytes_read(self) -> int:
        return self._bytes_done + (self._counter.count if self._counter else 0)

    def _raw(self, start: int) -> CountingReader:
        if self._counter is not None:
            self._bytes_done += self._counter.count
        s = self.split
        self._counter = CountingReader(open_at(self.store, s.bucket, s.key, start,
                                               size=s.size, etag=s.etag))
        return self._counter

    def _text_stream(self) -> Any:
        """The split's bytes: newline-aligned range, or the whole (decompressed) object."""
        s = self.split
        if s.compression or s.whole_object:
            return _decompressed(self._raw(0), s.compression)
        raw = self._raw(max(s.start - 1, 0))
        return read_line_range(raw, s.start, s.end)

    def batches(self) -> Iterator[SourceBatch]:  # pragma: no cover - abstract
        raise NotImplementedError


# ------------------------------------------------------------------------------ CSV


def csv_fast_type(type_name: str) -> pa.DataType:
    """The type the CSV reader converts to directly (strings where Arrow's CSV parser is
    stricter or different from the vectorised casts)."""
    t = parse_type(type_name)
    if isinstance(t, DecimalType):
        return pa.decimal128(t.precision, t.scale)
    return {
        "boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
        "double": pa.float64(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"), "binary": pa.binary(),
    }.get(str(t), pa.string())


class CsvReader(BaseReader):
    """pyarrow's CSV parser with explicit column types from the schema.

    If a column's values do not all parse with the fast type, they are parsed again with
    that column read as strings, so the vectorised casts find and reject the bad values;
    the column stays strings for the rest of the split. Where records cannot span lines
    (the default), the split is cut into chunks of whole lines, read once, and only the
    chunk in memory is parsed again. Where values may hold newlines (the split or the
    options say so), only pyarrow's own parser knows where a record ends (a quote opens
    a value only at a field's start, and escapes and doubled quotes close none): then the
    split is streamed and, for each dirty column, re-read from its start, the records
    already processed skipped (``bytes_read`` counts each read).
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.opts = csv_options(self.options)
        s = self.split
        if self.opts["header"]:
            names = s.header
            if names is None:
                data = self.store.get_range(s.bucket, s.key, 0, min(s.size, 2**20), etag=s.etag)
                if s.compression == "gzip":
                    import zlib

                    data = zlib.decompressobj(wbits=31).decompress(data, 2**20)
                cut = data.rfind(b"\n")
                names = read_csv_header(data[: cut + 1] if cut >= 0 else data, self.opts, s.uri)
        else:
            names = list(self.conformer.schema.names)
        self.names = list(names)
        self.conformer.observe(self.names, complete=True)
        mapping = self.conformer.source_for(self.names)
        self.include = [m for m in mapping if m is not None]
        self.fast_types = {
            src: csv_fast_type(f.type)
            for f, src in zip(self.conformer.fields, mapping, strict=True) if src is not None
        }
        self.block_size = int(self.options.get("block_size", 4 * 2**20))
        self._pending: list[tuple[int | None, str, str]] = []
        self._string_cols: set[str] = set()
        self._skip_invalid = 0
        self._invalid_seen = 0
        self._multiline = bool(s.newlines_in_values or self.opts["newlines_in_values"])
        self._read_options = pcsv.ReadOptions(
            use_threads=bool(self.options.get("use_threads")), column_names=self.names)
        self._parse_options = pcsv.ParseOptions(
            delimiter=self.opts["delimiter"], quote_char=self.opts["quote_char"],
            escape_char=self.opts["escape_char"], newlines_in_values=self._multiline,
            invalid_row_handler=self._on_invalid)

    def _on_invalid(self, row: Any) -> str:
        self._invalid_seen += 1
        if self._invalid_seen > self._skip_invalid:  # not one a re-read already reported
            self._pending.append((None, row.text, f"expected {row.expected_columns} fields, "
                                                  f"got {row.actual_columns}"))
        return "skip"

    def _convert_options(self) -> pcsv.ConvertOptions:
        types = {c: (pa.string() if c in self._string_cols else t)
                 for c, t in self.fast_types.items()}
        return pcsv.ConvertOptions(
            column_types=types, include_columns=self.include, include_missing_columns=True,
            null_values=self.opts["null_values"], strings_can_be_null=True,
            quoted_strings_can_be_null=True)

    def _first_skip(self) -> int:
        if self.split.start != 0:
            return 0
        return int(self.opts["skip_rows"]) + (1 if self.opts["header"] else 0)

    def _bad_column(self, e: pa.ArrowInvalid) -> None:
        """Read the column ``e`` names as strings from now on, or fail the split."""
        col = self._failed_column(e, self._string_cols)
        if col is None:
            raise CorruptInput(f"{self.split.uri}: unreadable CSV: {excerpt(str(e))}") from e
        self._string_cols.add(col)

    # -- records on single lines: chunks of whole lines, each read once

    def _chunks(self) -> Iterator[bytes]:
        """The split's text in chunks of about ``block_size`` bytes of whole lines."""
        stream = self._text_stream()
        carry = b""
        while True:
            data = bytes(stream.read(self.block_size))
            if not data:
                if carry.strip():
                    yield carry
                return
            buf = carry + data if carry else data
            # A line ends at LF or a lone CR (pyarrow takes both); a CRLF cut between
            # chunks leaves an empty line, which the parser ignores.
            i = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
            if i < 0:
                carry = buf
                continue
            chunk, carry = buf[: i + 1], buf[i + 1 :]
            yield chunk

    def _parse(self, chunk: bytes, skip: int) -> pa.Table | None:
        """The chunk as a table (``None``: no records), its malformed rows in
        ``_pending``; a column that fails its fast type is read as strings instead."""
        read_options = self._read_options
        read_options.skip_rows = skip
        read_options.block_size = len(chunk) + 1  # one batch per chunk
        while True:
            self._pending = []
            self._invalid_seen = 0
            try:
                return pcsv.read_csv(io.BytesIO(chunk), read_options=read_options,
                                     parse_options=self._parse_options,
                                     convert_options=self._convert_options())
            except pa.ArrowInvalid as e:
                if "Empty CSV file" in str(e):
                    return None
                self._bad_column(e)

    def _line_batches(self) -> Iterator[SourceBatch]:
        skip = self._first_skip()
        done = 0  # records so far, malformed ones included
        for chunk in self._chunks():
            table = self._parse(chunk, skip)
            skip = 0
            malformed, self._pending = self._pending, []
            if table is None:
                if malformed:
                    yield SourceBatch(pa.RecordBatch.from_pylist([], schema=pa.schema(
                        [(c, pa.string()) for c in self.include])), done, malformed)
                    done += len(malformed)
                continue
            b = table.combine_chunks().to_batches()
            batch = b[0] if b else pa.RecordBatch.from_pylist([], schema=table.schema)
            row0 = done + len(malformed)
            for off, piece in _slices(batch, self.batch_size):
                yield SourceBatch(piece, row0 + off, malformed if off == 0 else [])
            done += batch.num_rows + len(malformed)

    # -- records that may span lines: pyarrow's streaming reader, re-read per dirty column

    def _open(self) -> pcsv.CSVStreamingReader | None:
        read_options = pcsv.ReadOptions(
            use_threads=bool(self.options.get("use_threads")), block_size=self.block_size,
            column_names=self.names, skip_rows=self._first_skip())
        try:
            return pcsv.open_csv(self._text_stream(), read_options=read_options,
                                 parse_options=self._parse_options,
                                 convert_options=self._convert_options())
        except pa.ArrowInvalid as e:
            if "Empty CSV file" in str(e):
                return None
            raise

    def _streamed_batches(self) -> Iterator[SourceBatch]:
        done_valid = 0
        done_invalid = 0
        while True:
            self._skip_invalid = done_invalid
            self._invalid_seen = 0
            self._pending = []
            skip = done_valid
            try:
                reader = self._open()
                if reader is None:
                    return
                while True:
                    try:
                        b = reader.read_next_batch()
                    except StopIteration:
                        break
                    malformed, self._pending = self._pending, []
                    if skip >= b.num_rows:
                        skip -= b.num_rows
                        continue
                    if skip:
                        b = b.slice(skip)
                        skip = 0
                    row0 = done_valid + done_invalid + len(malformed)
                    for off, piece in _slices(b, self.batch_size):
                        yield SourceBatch(piece, row0 + off, malformed if off == 0 else [])
                    done_valid += b.num_rows
                    done_invalid += len(malformed)
                if self._pending:  # malformed trailing rows
                    yield SourceBatch(pa.RecordBatch.from_pylist([], schema=pa.schema(
                        [(c, pa.string()) for c in self.include])), done_valid + done_invalid,
                        self._pending)
                    self._pending = []
                return
            except pa.ArrowInvalid as e:
                self._bad_column(e)

    def _failed_column(self, err: Exception, string_cols: set[str]) -> str | None:
        m = _COL_ERR.search(str(err))
        if not m:
            return None
        idx = int(m.group(1))
        for cands in (self.names, self.include):
            if idx < len(cands):
                name = cands[idx]
                if name in self.fast_types and name not in string_cols and \
                        self.fast_types[name] != pa.string():
                    return name
        return None

    def batches(self) -> Iterator[SourceBatch]:
        try:
            yield from (self._streamed_batches() if self._multiline else self._line_batches())
        except OSError as e:
            raise CorruptInput(f"{self.split.uri}: unreadable CSV: {excerpt(str(e))}") from e


# ------------------------------------------------------------------------ JSON Lines


def json_fast_type(type_name: str) -> pa.DataType:
    t = parse_type(type_name)
    if isinstance(t, DecimalType):
        return pa.decimal128(t.precision, t.scale)
    return {"boolean": pa.bool_(), "int": pa.int64(), "long": pa.int64(),
            "float": pa.float64(), "double": pa.float64()}.get(str(t), pa.string())


def _json_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


def _merge_case_variants(table: pa.Table) -> pa.Table:
    """Coalesce JSON keys that differ only in case ("id" and "ID") into one column."""
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(table.column_names):
        groups.setdefault(n.lower(), []).append(i)
    if all(len(g) == 1 for g in groups.values()):
        return table
    import pyarrow.compute as pc

    names, cols = [], []
    for idxs in groups.values():
        arrays = [table.column(i) for i in idxs]
        names.append(table.column_names[idxs[0]])
        if len(arrays) == 1:
            cols.append(arrays[0])
            continue
        arrays = sorted(arrays, key=lambda a: a.null_count)  # the densest first
        if len({a.type for a in arrays}) > 1:
            arrays = [a.cast(pa.string()) for a in arrays]
        cols.append(pc.coalesce(*arrays))
    return pa.table(cols, names=names)


class JsonLinesReader(BaseReader):
    """Chunks of whole lines parsed by pyarrow's JSON reader with an explicit schema;
    a chunk whose values do not fit it is parsed line by line (values as text) so the
    vectorised casts can reject individual records."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.chunk_bytes = int(self.options.get("block_size", 4 * 2**20))
        self.fast_schema = pa.schema([(f.name, json_fast_type(f.type))
                                      for f in self.conformer.fields])
        self._fast_names = {f.name for f in self.conformer.fields}
        self.records = 0

    def _parse_fast(self, chunk: bytes) -> pa.Table:
        t = pj.read_json(
            io.BytesIO(chunk),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(chunk) + 1),
            parse_options=pj.ParseOptions(explicit_schema=self.fast_schema,
                                          unexpected_field_behavior="infer"),
        )
        # A key that matches a schema field only case-insensitively arrives as an extra
        # column: let it replace the (all-null) explicit one.
        names = t.column_names
        extras = [n for n in names if n not in self._fast_names]
        if extras:
            lowered = {n.lower(): n for n in extras}
            drop = [i for i, n in enumerate(names) if n in self._fast_names and
                    n.lower() in lowered and t.column(i).null_count == t.num_rows]
            for i in reversed(drop):
                t = t.remove_column(i)
        return t

    def _parse_python(self, chunk: bytes) -> pa.Table:
        rows, keys = json_objects(chunk.split(b"\n"), self.split.uri, first=self.records)
        cols = {k: pa.array([_json_text(r.get(k)) for r in rows], pa.string()) for k in keys}
        return pa.table(cols) if cols else pa.table({"__empty__": pa.nulls(len(rows))})

    def _chunks(self) -> Iterator[bytes]:
        stream = self._text_stream()
        carry = b""
        try:
            while True:
                data = stream.read(self.chunk_bytes)
                if not data:
                    if carry.strip():
                        yield carry
                    return
                buf = carry + data if carry else data
                i = buf.rfind(b"\n")
                if i < 0:
                    carry = buf
                    continue
                chunk, carry = buf[: i + 1], buf[i + 1 :]
                yield chunk
        except OSError as e:
            raise CorruptInput(f"{self.split.uri}: unreadable JSON Lines: {e}") from e

    def batches(self) -> Iterator[SourceBatch]:
        for chunk in self._chunks():
            if not chunk.strip():
                continue
            try:
                table = self._parse_fast(chunk)
            except pa.ArrowInvalid:
                table = self._parse_python(chunk)
            if "__empty__" in table.column_names:
                table = table.drop_columns(["__empty__"])
            table = _merge_case_variants(table)
            present = [n for n in table.column_names if not (
                n in self._fast_names and table.column(n).null_count == table.num_rows)]
            self.conformer.observe(present, complete=False)
            extras = [n for n in table.column_names if n.lower() not in
                      self.conformer._by_lower]
            if extras:
                table = table.drop_columns(extras)
            if table.num_columns == 0:
                table = pa.table({"__rows__": pa.nulls(table.num_rows)})
            for b in table.combine_chunks().to_batches(max_chunksize=self.batch_size):
                yield SourceBatch(b, self.records)
                self.records += b.num_rows


# --------------------------------------------------------------------------- Parquet


class ParquetReader(BaseReader):
    def batches(self) -> Iterator[SourceBatch]:
        import pyarrow.parquet as pq

        s = self.split
        raw = self._raw(0)
        try:
            pf = pq.ParquetFile(raw)
        except (pa.ArrowInvalid, OSError) as e:
            raise CorruptInput(f"{s.uri} is not a readable Parquet file: {e}") from e
        names = list(pf.schema_arrow.names)
        self.conformer.observe(names, complete=True)
        cols = [m for m in self.conformer.source_for(names) if m is not None]
        row0 = s.first_row
        groups = list(s.row_groups) if s.row_groups else list(range(pf.num_row_groups))
        try:
            it = pf.iter_batches(batch_size=self.batch_size, row_groups=groups, columns=cols,
                                 use_threads=bool(self.options.get("use_threads")))
            for b in it:
                if not cols:
                    b = pa.RecordBatch.from_arrays([pa.nulls(b.num_rows)], names=["__rows__"])
                yield SourceBatch(b, row0)
                row0 += b.num_rows
        except (pa.ArrowInvalid, OSError) as e:
            raise CorruptInput(f"{s.uri}: cannot read Parquet data: {e}") from e


# ------------------------------------------------------------------------------ Avro


class AvroReader(BaseReader):
    def batches(self) -> Iterator[SourceBatch]:
        from datalake.engine.avro import AvroDecoder, owned_blocks, read_header

        s = self.split
        header = read_header(self.store, s.bucket, s.key, s.size, s.etag)
        dec = AvroDecoder(header, s.uri)
        self.conformer.observe(dec.names, complete=True)
        raw = self._raw(0)
        blocks = owned_blocks(raw, header, s.start, s.end, s.size, s.uri)
        row0 = 0
        for b in dec.batches(blocks, self.batch_size):
            yield SourceBatch(b, row0)
            row0 += b.num_rows


READERS: dict[str, type[BaseReader]] = {
    SourceFormat.CSV: CsvReader, SourceFormat.JSONL: JsonLinesReader,
    SourceFormat.PARQUET: ParquetReader, SourceFormat.AVRO: AvroReader,
}


def make_reader(split: Split, store: ObjectStore, options: dict[str, Any],
                conformer: Conformer, batch_size: int) -> BaseReader:
    try:
        cls = READERS[split.format]
    except KeyError:
        raise CorruptInput(f"unknown format {split.format!r}") from None
    return cls(split, store, options, conformer, batch_size)
