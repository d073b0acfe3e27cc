"""Byte streams over a slice of an object: newline-aligned ranges, chained readers."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from datalake.engine.store import ObjectStore
from datalake.errors import CorruptInput

CHUNK = 4 * 2**20


def open_at(store: ObjectStore, bucket: str, key: str, start: int = 0, *,
            size: int | None = None, etag: str | None = None) -> BinaryIO:
    """Open ``s3://bucket/key`` positioned at byte ``start``; with the planned ``size``
    and ``etag``, every read is conditional on that version (SourceChanged if not)."""
    f = store.open_input(bucket, key, size=size, etag=etag)
    if start:
        f.seek(start)
    return f


class IterStream(io.RawIOBase):
    """A read-only file object over an iterator of ``bytes`` chunks."""

    def __init__(self, chunks: Iterator[bytes], on_close: Any = None) -> None:
        super().__init__()
        self._it = chunks
        self._buf = memoryview(b"")
        self._on_close = on_close
        self.bytes_out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            nxt = next(self._it, None)
            if nxt is None:
                return 0
            self._buf = memoryview(nxt)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.bytes_out += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            everything = [bytes(self._buf), *self._it]
            self._buf = memoryview(b"")
            out = b"".join(everything)
            self.bytes_out += len(out)
            return out
        parts: list[bytes] = []
        want = size
        while want > 0:
            if not self._buf:
                nxt = next(self._it, None)
                if nxt is None:
                    break
                self._buf = memoryview(nxt)
                continue
            take = self._buf[:want]
            parts.append(bytes(take))
            self._buf = self._buf[len(take):]
            want -= len(take)
        out = b"".join(parts)
        self.bytes_out += len(out)
        return out

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
        super().close()


def line_range_chunks(raw: Any, start: int, end: int, *, chunk: int = CHUNK,
                      newline: bytes = b"\n") -> Iterator[bytes]:
    """Yield the bytes of the records that START inside ``[start, end)``.

    ``raw`` must be positioned at ``max(start - 1, 0)``. A record starts at byte 0 or
    right after a newline. The partial first line is skipped unless ``start == 0``; the
    last record is read past ``end`` up to and including its terminating newline (or EOF).
    """
    pos = max(start - 1, 0)  # absolute offset of the next byte read from raw
    if start > 0:
        # Skip to just after the first newline at or after start-1.
        while True:
            data = raw.read(chunk)
            if not data:
                return
            i = data.find(newline)
            if i < 0:
                pos += len(data)
                if pos >= end:  # no record starts inside [start, end)
                    return
                continue
            q = pos + i
            if q >= end - 1:
                return
            rest = data[i + 1 :]
            pos = q + 1
            break
    else:
        rest = b""
    limit = end - 1  # the last record ends at the first newline at position >= limit
    while True:
        if rest:
            data, rest = rest, b""
        else:
            data = raw.read(chunk)
            if not data:
                return
        data_end = pos + len(data)
        if data_end > limit:
            i = data.find(newline, max(0, limit - pos))
            if i >= 0:
                yield data[: i + 1]
                return
        yield data
        pos = data_end


def read_line_range(raw: Any, start: int, end: int, **kw: Any) -> IterStream:
    """A file object over :func:`line_range_chunks`."""
    return IterStream(line_range_chunks(raw, start, end, **kw), on_close=raw.close)


class CountingReader(io.RawIOBase):
    """Wraps a file object and counts the bytes read through it."""

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self._raw.read(len(b))
        b[: len(data)] = data
        self.count += len(data)
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


def json_objects(
    lines: Iterable[bytes], uri: str, *, first: int = 0, unit: str = "record"
) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse JSON Lines into dicts (blank lines skipped) and the union of their keys.

    Parameters
    ----------
    lines:
        The raw lines.
    uri:
        The source, for error messages.
    first, unit:
        How the first non-blank line is numbered and named in error messages.

    Raises
    ------
    CorruptInput
        When a line is not JSON or not a JSON object.
    """
    rows: list[dict[str, Any]] = []
    n = first
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise CorruptInput(f"{uri}: {unit} {n} is not valid JSON: {e}") from e
        if not isinstance(rec, dict):
            raise CorruptInput(f"{uri}: {unit} {n} is not a JSON object")
        rows.append(rec)
        n += 1
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return rows, list(keys)
