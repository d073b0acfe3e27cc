"""Compaction planning: grouping small files, chunking, output names, close decisions."""

from __future__ import annotations

from dataclasses import dataclass

from datalake.domain.compaction import (
    MergeInput,
    PartitionRef,
    chunk_by_size,
    closes_row_group,
    group_small_files,
    may_close_file,
    output_key,
    output_stem,
)


@dataclass(frozen=True)
class Row:
    id: str
    key: str
    size_bytes: int
    partition_path: str = "k=a"
    schema_version: int | None = 1
    bucket: str = "lake"
    record_count: int = 10
    checksum: str = "c"


PARTS = {"k=a": PartitionRef("pa", "k=a", {"k": "a"}), "k=b": PartitionRef("pb", "k=b", {"k": "b"})}


def test_small_files_group_by_partition_schema_version_and_folder() -> None:
    rows = [
        Row("1", "t/k=a/x-1.parquet", 10),
        Row("2", "t/k=a/x-2.parquet", 10),
        Row("3", "t/k=a/x-3.parquet", 10, schema_version=2),  # alone in its version
        Row("4", "t/k=a/old/x-4.parquet", 10),
        Row("5", "t/k=a/old/x-5.parquet", 10),
        Row("6", "t/k=a/x-6.parquet", 100),  # not small
        Row("7", "t/k=b/x-7.parquet", 10, partition_path="k=b"),
        Row("8", "t/k=b/x-8.parquet", 10, partition_path="k=b"),
        Row("9", "t/k=c/x-9.parquet", 10, partition_path="k=c"),  # partition not looked at
        Row("10", "t/k=c/x-10.parquet", 10, partition_path="k=c"),
    ]
    groups = group_small_files(rows, PARTS, small=50)
    assert [(g.partition.id, g.schema_version, g.folder, [i.id for i in g.inputs])
            for g in groups] == [
        ("pa", 1, "t/k=a", ["1", "2"]),
        ("pa", 1, "t/k=a/old", ["4", "5"]),
        ("pb", 1, "t/k=b", ["7", "8"]),
    ]
    assert groups[0].inputs[0] == MergeInput("1", "lake", "t/k=a/x-1.parquet", 10, 10, "c")


def test_a_lone_small_file_is_no_group() -> None:
    assert group_small_files([Row("1", "k=a/a.parquet", 1)], PARTS, small=50) == []


def test_chunks_stay_under_the_cap_and_a_lone_last_item_joins_the_one_before() -> None:
    assert chunk_by_size([3, 3, 3, 3, 3], int, max_bytes=9) == [[3, 3, 3], [3, 3]]
    assert chunk_by_size([3, 3, 3, 3], int, max_bytes=9) == [[3, 3, 3, 3]]
    assert chunk_by_size([20, 1], int, max_bytes=9) == [[20, 1]]
    assert chunk_by_size([], int, max_bytes=9) == []


def test_output_names_are_a_digest_of_inputs_and_settings() -> None:
    a = MergeInput("1", "lake", "k=a/x.parquet", 1, 1, "c1")
    b = MergeInput("2", "lake", "k=a/y.parquet", 1, 1, "c2")
    stem = output_stem([a, b], target=100, compression="zstd", row_groups=[1, 2, 3])
    assert stem.startswith("part-compact-") and len(stem) == len("part-compact-") + 16
    assert stem == output_stem([b, a], target=100, compression="zstd", row_groups=[1, 2, 3])
    assert stem != output_stem([a, b], target=101, compression="zstd", row_groups=[1, 2, 3])
    assert stem != output_stem([a, b], target=100, compression="snappy", row_groups=[1, 2, 3])
    assert output_key("t/k=a", stem, 3) == f"t/k=a/{stem}-0003.parquet"
    assert output_key("", stem, 0) == f"{stem}-0000.parquet"


def test_a_full_file_closes_only_if_the_rest_makes_a_file_of_half_the_target() -> None:
    assert may_close_file(bytes_left=50, target=100)
    assert not may_close_file(bytes_left=49.9, target=100)


def _closes(rows: int, nbytes: int = 0, left: int = 10**9, room: float = 10**12) -> bool:
    return closes_row_group(rows=rows, nbytes=nbytes, rows_left_after=left, room_bytes=room,
                            bytes_per_row=1.0, min_rows=100, max_rows=1000, max_bytes=10**6)


def test_a_row_group_closes_when_full_with_enough_rows_and_no_small_remainder() -> None:
    assert _closes(1000)  # max rows
    assert _closes(150, room=150)  # fills the file
    assert _closes(100, nbytes=10**6)  # memory
    assert not _closes(99, nbytes=10**6)  # below the minimum, whatever memory says
    assert not _closes(500)  # not full
    assert not _closes(1000, left=99)  # would leave a small remainder ...
    assert _closes(1000, nbytes=10**6, left=99)  # ... unless memory says so
