"""Compaction planning: which small files merge together, in what chunks, into which names.

Pure: the service reads the catalog's rows, this module groups them, and the engine
(:mod:`datalake.engine.rewrite`) rewrites each group's bytes.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Bumped when the output layout changes, so new runs never reuse old output keys.
LAYOUT_VERSION = "1"
#: Input bytes merged at most in one go (one commit); bounds a merge's duration.
MAX_MERGE_INPUT_BYTES = 2 * 2**30
#: A file stops growing at the target only if what is left would fill this much of another.
MIN_LAST_FILE_FRACTION = 0.5


class CandidateFile(Protocol):
    """What planning reads of a committed file (a catalog ``DataFile`` row fits)."""

    @property
    def id(self) -> str: ...
    @property
    def bucket(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def record_count(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def checksum(self) -> str: ...
    @property
    def partition_path(self) -> str: ...
    @property
    def schema_version(self) -> int | None: ...


@dataclass(frozen=True)
class PartitionRef:
    """The partition row a group of files belongs to."""

    id: str
    path: str
    values: dict[str, Any]


@dataclass(frozen=True)
class MergeInput:
    """One file to merge."""

    id: str
    bucket: str
    key: str
    record_count: int
    size_bytes: int
    checksum: str


@dataclass
class MergeGroup:
    """Small files of one partition, one schema version and one folder: they may merge."""

    partition: PartitionRef
    schema_version: int | None
    inputs: list[MergeInput] = field(default_factory=list)

    @property
    def folder(self) -> str:
        """The folder of the inputs (where the outputs go)."""
        return posixpath.dirname(self.inputs[0].key) if self.inputs else ""


def group_small_files(
    files: Iterable[CandidateFile], partitions: Mapping[str, PartitionRef], *, small: int
) -> list[MergeGroup]:
    """Group the files below ``small`` bytes that may merge, in a stable order.

    Parameters
    ----------
    files:
        Committed files, in key order (the order of each group's inputs).
    partitions:
        The partitions looked at, by path; files of other partitions are left alone.
    small:
        Files of at least this many bytes are left alone.

    Returns
    -------
    list[MergeGroup]
        One group per (partition, schema version, folder) holding at least two small
        files, ordered by partition path, schema version and folder.
    """
    groups: dict[tuple[str, int | None, str], list[CandidateFile]] = defaultdict(list)
    for f in files:
        if f.size_bytes < small and f.partition_path in partitions:
            groups[(f.partition_path, f.schema_version, posixpath.dirname(f.key))].append(f)
    return [
        MergeGroup(
            partition=partitions[path],
            schema_version=version,
            inputs=[
                MergeInput(f.id, f.bucket, f.key, f.record_count, f.size_bytes, f.checksum)
                for f in group
            ],
        )
        for (path, version, _dir), group in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])
        )
        if len(group) >= 2
    ]


def chunk_by_size[T](
    items: Sequence[T], size: Callable[[T], int], *, max_bytes: int = MAX_MERGE_INPUT_BYTES
) -> list[list[T]]:
    """Cut ``items`` (in order) into chunks of at most ``max_bytes`` each.

    A chunk holds at least one item, however large; a last chunk of a single item
    joins the chunk before it (a merge of one file would be no merge).
    """
    chunks: list[list[T]] = []
    total = 0
    for item in items:
        if not chunks or total + size(item) > max_bytes:
            chunks.append([])
            total = 0
        chunks[-1].append(item)
        total += size(item)
    if len(chunks) >= 2 and len(chunks[-1]) == 1:
        last = chunks.pop()
        chunks[-1].extend(last)
    return chunks


def output_stem(
    inputs: Iterable[MergeInput], *, target: int, compression: str, row_groups: Sequence[int]
) -> str:
    """The deterministic name stem of a merge's outputs: a digest of inputs and settings.

    ``row_groups`` are the rewrite's row-group bounds; a change of any setting (or of
    ``LAYOUT_VERSION``) gives new names, so a new run never reuses an old run's keys.
    """
    raw = json.dumps(
        {
            "inputs": sorted([i.bucket, i.key, i.checksum] for i in inputs),
            "target": target,
            "compression": compression,
            "row_groups": list(row_groups),
            "layout": LAYOUT_VERSION,
        },
        sort_keys=True,
    )
    return "part-compact-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def output_key(folder: str, stem: str, n: int) -> str:
    """The key of a merge's ``n``-th output file."""
    name = f"{stem}-{n:04d}.parquet"
    return f"{folder}/{name}" if folder else name


def may_close_file(*, bytes_left: float, target: int) -> bool:
    """Whether a full output file may close: only if the rows left would make a file of
    at least half the target (otherwise they join this one rather than make a small one)."""
    return bytes_left >= target * MIN_LAST_FILE_FRACTION


def closes_row_group(
    *,
    rows: int,
    nbytes: int,
    rows_left_after: int,
    room_bytes: float,
    bytes_per_row: float,
    min_rows: int,
    max_rows: int,
    max_bytes: int,
) -> bool:
    """Whether the rows buffered so far make a row group now.

    A row group closes once it has ``min_rows`` rows and is full (``max_rows`` rows,
    ``max_bytes`` in memory, or the room left in the file), but never leaves a remainder
    below ``min_rows`` behind unless memory (``max_bytes``) says so.
    """
    full = rows >= max_rows or nbytes >= max_bytes or rows * bytes_per_row >= room_bytes
    return (
        rows >= min_rows
        and full
        and (rows_left_after >= min_rows or nbytes >= max_bytes)
    )
