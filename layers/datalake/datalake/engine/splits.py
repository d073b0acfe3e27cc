"""Units of work: cut source objects into splits of about ``split_size_bytes``.

* CSV / JSON Lines: byte ranges ``[start, end)``; a split owns the records that START
  inside its range (the worker skips the partial first line unless ``start == 0`` and
  reads past ``end`` to finish its last record). gzip objects are one split. CSV splits
  carry the header read from the object start.
* Parquet: groups of consecutive row groups.
* Avro: byte ranges; a split owns the blocks that start inside its range (found by the
  file's sync marker), so splits align to blocks.
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any

from datalake.domain.source_objects import is_data_object
from datalake.domain.vocabulary import DEFAULT_SPLIT_SIZE_MB, SourceFormat
from datalake.engine.store import ObjectInfo, ObjectStore
from datalake.errors import CorruptInput, InvalidInput, excerpt

FORMATS: tuple[str, ...] = tuple(SourceFormat)
_EXT = {
    ".csv": SourceFormat.CSV,
    ".tsv": SourceFormat.CSV,
    ".txt": SourceFormat.CSV,
    ".jsonl": SourceFormat.JSONL,
    ".ndjson": SourceFormat.JSONL,
    ".json": SourceFormat.JSONL,
    ".parquet": SourceFormat.PARQUET,
    ".pq": SourceFormat.PARQUET,
    ".avro": SourceFormat.AVRO,
}
SAMPLE_BYTES = 2**20


@dataclass(frozen=True)
class Split:
    """One unit of work: a slice of one source object."""

    index: int
    bucket: str
    key: str
    format: str
    size: int
    etag: str
    start: int
    end: int
    row_groups: tuple[int, ...] = ()
    header: list[str] | None = None
    compression: str | None = None
    #: CSV only: the whole object is one split and quoted values may contain newlines.
    newlines_in_values: bool = False
    #: Parquet only: number of rows in the object before the first row group of the split.
    first_row: int = 0

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def whole_object(self) -> bool:
        return self.start == 0 and self.end >= self.size

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["row_groups"] = list(self.row_groups)
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Split:
        d = dict(data)
        d["row_groups"] = tuple(d.get("row_groups") or ())
        if d.get("header") is not None:
            d["header"] = list(d["header"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def detect_format(key: str, explicit: str | None) -> tuple[str, str | None]:
    """Return ``(format, compression)`` for an object key.

    ``explicit`` (csv, jsonl/json/ndjson, parquet, avro) wins over the extension; a
    ``.gz`` suffix means gzip compression.

    Raises
    ------
    InvalidInput
        When neither the explicit format nor the extension names a known format.
    """
    name = key.rsplit("/", 1)[-1].lower()
    compression = None
    if name.endswith(".gz") or name.endswith(".gzip"):
        compression = "gzip"
        name = name.rsplit(".", 1)[0]
    if explicit:
        fmt = explicit.strip().lower()
        if fmt.endswith(".gz"):
            fmt, compression = fmt[:-3], "gzip"
        fmt = SourceFormat.parse(fmt)  # the vocabulary job creation accepts, aliases too
        if compression and fmt in (SourceFormat.PARQUET, SourceFormat.AVRO):
            raise InvalidInput(f"{fmt} objects cannot be gzip-compressed as a whole: {key}")
        return fmt, compression
    dot = name.rfind(".")
    ext = name[dot:] if dot >= 0 else ""
    fmt_or_none = _EXT.get(ext)
    if fmt_or_none is None:
        raise InvalidInput(
            f"cannot tell the format of {key!r} from its extension; "
            "use .csv, .csv.gz, .jsonl, .ndjson, .json, .parquet or .avro, or set format"
        )
    if compression and fmt_or_none in (SourceFormat.PARQUET, SourceFormat.AVRO):
        raise InvalidInput(f"{fmt_or_none} objects cannot be gzip-compressed as a whole: {key}")
    return fmt_or_none, compression


# --------------------------------------------------------------------------- CSV helpers


def csv_options(options: dict[str, Any]) -> dict[str, Any]:
    """Normalised CSV options with defaults."""
    o = options or {}
    nulls = o.get("null_values")
    return {
        "delimiter": o.get("delimiter", ","),
        "quote_char": o.get("quote_char", '"'),
        "escape_char": o.get("escape_char", False),
        "header": bool(o.get("header", True)),
        "skip_rows": int(o.get("skip_rows", 0) or 0),
        "null_values": list(nulls) if nulls is not None else ["", "NA", "NULL", "null", "\\N"],
        "newlines_in_values": o.get("newlines_in_values"),
    }


def _prefix(store: ObjectStore, obj: ObjectInfo, compression: str | None,
            nbytes: int = SAMPLE_BYTES) -> tuple[bytes, bool]:
    """The first ``nbytes`` (decompressed) bytes and whether that is the whole content."""
    if compression == "gzip":
        raw = store.get_range(obj.bucket, obj.key, 0, min(obj.size, nbytes), etag=obj.etag)
        d = zlib.decompressobj(wbits=31)
        try:
            out = d.decompress(raw, nbytes)
        except zlib.error as e:
            raise CorruptInput(f"{obj.uri} is not valid gzip: {e}") from e
        complete = d.eof and len(raw) >= obj.size
        return out, complete
    raw = store.get_range(obj.bucket, obj.key, 0, min(obj.size, nbytes), etag=obj.etag)
    return raw, len(raw) >= obj.size


def _cut_at_newline(data: bytes, complete: bool) -> bytes:
    if complete:
        return data
    i = data.rfind(b"\n")
    return data[: i + 1] if i >= 0 else data


#: What a binary object read as text most likely is, by its first bytes.
_MAGIC = (
    (b"PAR1", "a Parquet file (format parquet)"),
    (b"Obj\x01", "an Avro file (format avro)"),
    (b"\x1f\x8b", "gzip-compressed (name it .gz or set the compression option to gzip)"),
    (b"PK\x03\x04", "a zip archive"),
)
_TEXT_FORMATS: dict[str, str] = {SourceFormat.CSV: "CSV", SourceFormat.JSONL: "JSON Lines"}


def check_text(data: bytes, fmt: str, uri: str) -> None:
    """Refuse an object read as CSV or JSON Lines whose first bytes are binary.

    A NUL byte never occurs in CSV or JSON text (UTF-8), and is in nearly every binary
    format: such an object was given the wrong format, and no record of it can be read.

    Raises
    ------
    CorruptInput
        Saying what the object looks like, quoting its first bytes escaped.
    """
    if b"\x00" not in data:
        return
    hint = next((what for magic, what in _MAGIC if data.startswith(magic)), None)
    looks = f"; it looks like {hint}" if hint else ""
    raise CorruptInput(
        f"{uri} is not {_TEXT_FORMATS.get(fmt, fmt)} text: it holds binary (NUL) bytes, "
        f"starting {excerpt(data[:16])}{looks}"
    )


def read_csv_header(data: bytes, opts: dict[str, Any], uri: str = "") -> list[str]:
    """Column names from the start of a CSV object (after ``skip_rows`` rows)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        reader = pcsv.open_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(skip_rows=opts["skip_rows"], use_threads=False,
                                          block_size=max(len(data), 1) + 1),
            parse_options=pcsv.ParseOptions(delimiter=opts["delimiter"],
                                             quote_char=opts["quote_char"],
                                             escape_char=opts["escape_char"],
                                             newlines_in_values=True,
                                             invalid_row_handler=lambda row: "skip"),
            convert_options=pcsv.ConvertOptions(column_types={}, strings_can_be_null=True),
        )
        return list(reader.schema.names)
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise CorruptInput(f"cannot read the CSV header of {uri}: {excerpt(str(e))}") from e


def has_quoted_newlines(data: bytes, opts: dict[str, Any]) -> bool:
    """Whether a sample of CSV text contains newlines inside quoted values."""
    if opts["quote_char"] is False or data.find(opts["quote_char"].encode()) < 0:
        return False
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        t = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(skip_rows=opts["skip_rows"], use_threads=False,
                                          autogenerate_column_names=True),
            parse_options=pcsv.ParseOptions(delimiter=opts["delimiter"],
                                            quote_char=opts["quote_char"],
                                            escape_char=opts["escape_char"],
                                            newlines_in_values=True,
                                            invalid_row_handler=lambda row: "skip"),
            convert_options=pcsv.ConvertOptions(column_types={}, strings_can_be_null=False),
        )
    except pa.ArrowInvalid:
        return True  # cannot tell: be safe
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    blank = data.count(b"\n\n") + data.count(b"\n\r\n")
    return t.num_rows + opts["skip_rows"] < lines - blank


# ----------------------------------------------------------------------- the planner


def _byte_ranges(size: int, split_size: int) -> list[tuple[int, int]]:
    n = max(1, math.ceil(size / split_size))
    step = math.ceil(size / n)
    return [(i * step, min(size, (i + 1) * step)) for i in range(n) if i * step < size]


def plan_splits(objects: list[ObjectInfo], *, store: ObjectStore, format: str | None,
                options: dict[str, Any],
                split_size_bytes: int = DEFAULT_SPLIT_SIZE_MB * 2**20) -> list[Split]:
    """Cut source objects into splits of about ``split_size_bytes``.

    Objects that hold no records (empty ones, and the markers and folder keys of
    :func:`~datalake.domain.source_objects.marker_reason`) produce no split. Split
    indexes run over all objects in order.

    Raises
    ------
    InvalidInput
        When an object's format cannot be determined.
    CorruptInput
        When an object's header or footer cannot be read.
    """
    options = options or {}
    split_size = max(1, int(split_size_bytes))
    out: list[Split] = []
    for obj in objects:
        # markers (_SUCCESS, .crc, folder keys) and empty objects: no records, no format
        if not is_data_object(obj.key, obj.size):
            continue
        fmt, comp = detect_format(obj.key, format or options.get("format"))
        if options.get("compression") is not None:
            comp = options["compression"] or None
        base: dict[str, Any] = {"bucket": obj.bucket, "key": obj.key, "format": fmt,
                                "size": obj.size, "etag": obj.etag, "compression": comp}
        if fmt == SourceFormat.CSV:
            opts = csv_options(options)
            header = None
            data, complete = _prefix(store, obj, comp)
            check_text(data, fmt, obj.uri)
            nl = opts["newlines_in_values"]
            if nl is None:
                nl = bool(comp is None and obj.size > split_size
                          and has_quoted_newlines(_cut_at_newline(data, complete), opts))
            if opts["header"]:
                header = read_csv_header(_cut_at_newline(data, complete) or data, opts, obj.uri)
            if comp or nl or obj.size <= split_size:
                ranges = [(0, obj.size)]
            else:
                ranges = _byte_ranges(obj.size, split_size)
            for s, e in ranges:
                out.append(Split(index=len(out), start=s, end=e, header=header,
                                 newlines_in_values=bool(nl), **base))
        elif fmt == SourceFormat.JSONL:
            ranges = [(0, obj.size)] if comp or obj.size <= split_size else _byte_ranges(
                obj.size, split_size)
            for s, e in ranges:
                out.append(Split(index=len(out), start=s, end=e, **base))
        elif fmt == SourceFormat.PARQUET:
            out.extend(_parquet_splits(obj, store, split_size, base, len(out)))
        elif fmt == SourceFormat.AVRO:
            head = store.get_range(obj.bucket, obj.key, 0, 4)
            if head != b"Obj\x01":
                raise CorruptInput(f"{obj.uri} is not an Avro object container file")
            for s, e in _byte_ranges(obj.size, split_size):
                out.append(Split(index=len(out), start=s, end=e, **base))
    return out


def _parquet_splits(obj: ObjectInfo, store: ObjectStore, split_size: int,
                    base: dict[str, Any], first_index: int) -> list[Split]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datalake.engine.streams import open_at

    f = open_at(store, obj.bucket, obj.key, size=obj.size, etag=obj.etag)
    try:
        md = pq.ParquetFile(f).metadata
    except (pa.ArrowInvalid, OSError) as e:
        raise CorruptInput(f"{obj.uri} is not a readable Parquet file: {e}") from e
    finally:
        f.close()
    out: list[Split] = []
    group: list[int] = []
    group_bytes = 0
    rows_before = 0
    first_row = 0
    g_start = g_end = 0
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        starts, ends = [], []
        size = 0
        for c in range(rg.num_columns):
            col = rg.column(c)
            s = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            starts.append(s)
            ends.append(s + col.total_compressed_size)
            size += col.total_compressed_size
        if not group:
            g_start = min(starts) if starts else 0
            first_row = rows_before
        group.append(i)
        group_bytes += size
        g_end = max(ends) if ends else g_start
        rows_before += rg.num_rows
        if group_bytes >= split_size:
            out.append(Split(index=first_index + len(out), start=g_start, end=g_end,
                             row_groups=tuple(group), first_row=first_row, **base))
            group, group_bytes = [], 0
    if group:
        out.append(Split(index=first_index + len(out), start=g_start, end=g_end,
                         row_groups=tuple(group), first_row=first_row, **base))
    return out


MAX_SPLITS_PER_BATCH = 256


def pack_splits(splits: list[Split], *, split_size_bytes: int,
                max_splits: int = MAX_SPLITS_PER_BATCH) -> list[list[Split]]:
    """Group consecutive splits into batches of about ``split_size_bytes`` each.

    A big object's splits are already near the size and stay one to a batch; small
    objects are packed together, so ten thousand small files make tens of batches, not
    ten thousand (each a worker invocation, a Map iteration in the job's history and a
    set of tiny Parquet files), and one worker writes each partition's rows of all of
    them into one file. At most ``max_splits`` splits go into one batch: every split
    costs its worker two HEAD requests (the source checked before and after reading).
    Order is kept, so the packing is deterministic.
    """
    target = max(1, int(split_size_bytes))
    groups: list[list[Split]] = []
    current: list[Split] = []
    size = 0
    for sp in splits:
        n = max(sp.end - sp.start, 0) or sp.size
        if current and (size + n > target or len(current) >= max_splits):
            groups.append(current)
            current, size = [], 0
        current.append(sp)
        size += n
    if current:
        groups.append(current)
    return groups


def batch_to_json(splits: list[Split]) -> dict[str, Any]:
    """A batch's stored form: one split as itself, several under ``splits``."""
    if len(splits) == 1:
        return splits[0].to_json()
    return {"splits": [sp.to_json() for sp in splits]}


def batch_from_json(data: dict[str, Any]) -> list[Split]:
    """The splits of a batch stored by :func:`batch_to_json`."""
    if "splits" in data:
        return [Split.from_json(d) for d in data["splits"]]
    return [Split.from_json(data)]


__all__ = ["FORMATS", "MAX_SPLITS_PER_BATCH", "Split", "batch_from_json", "batch_to_json",
           "check_text", "csv_options", "detect_format", "pack_splits", "plan_splits",
           "read_csv_header"]
