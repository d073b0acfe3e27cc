"""TableFormat and IngestOptions: the defaults written once, the ranges, the stored JSON."""

from __future__ import annotations

from typing import Any

import pytest

from datalake.domain.formats import IngestOptions, TableFormat
from datalake.domain.vocabulary import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_COMPRESSION,
    DEFAULT_SPLIT_SIZE_MB,
    DEFAULT_TARGET_FILE_SIZE_MB,
    Compression,
)
from datalake.errors import InvalidInput


def test_table_format_defaults() -> None:
    fmt = TableFormat.parse(None)
    assert fmt.compression is DEFAULT_COMPRESSION is Compression.SNAPPY
    assert fmt.target_file_size_mb == DEFAULT_TARGET_FILE_SIZE_MB == 128
    assert fmt.target_file_size_bytes == 128 * 2**20
    assert fmt.to_json() == {"compression": "snappy", "target_file_size_mb": 128}


def test_table_format_normalises_and_keeps_other_keys() -> None:
    fmt = TableFormat.parse({"compression": "ZSTD", "target_file_size_mb": 64.5, "note": "x"})
    assert fmt.to_json() == {"compression": "zstd", "target_file_size_mb": 64.5, "note": "x"}
    assert TableFormat.parse({"target_file_size_mb": 64}).to_json()["target_file_size_mb"] == 64


def test_table_format_is_frozen() -> None:
    fmt = TableFormat.parse(None)
    with pytest.raises(ValueError):
        fmt.compression = Compression.GZIP  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"compression": "rar"}, "compression must be one of"),
        ({"target_file_size_mb": 0}, "between 1 and 2048"),
        ({"target_file_size_mb": 4096}, "between 1 and 2048"),
        ({"target_file_size_mb": "128"}, "between 1 and 2048"),
        ({"target_file_size_mb": True}, "between 1 and 2048"),
    ],
)
def test_table_format_refusals(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        TableFormat.parse(data)


def test_ingest_options_defaults_and_overrides() -> None:
    opts = IngestOptions.parse(None)
    assert (opts.batch_size, opts.split_size_mb) == (DEFAULT_BATCH_SIZE, DEFAULT_SPLIT_SIZE_MB)
    assert opts.to_json() == {"batch_size": DEFAULT_BATCH_SIZE, "split_size_mb": 128}
    given = IngestOptions.parse({"batch_size": 500, "header": False}, split_size_mb=64)
    assert given.to_json() == {"batch_size": 500, "split_size_mb": 64, "header": False}
    assert IngestOptions.of({"split_size_mb": 0.5}).split_size_bytes == 2**19


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"batch_size": 0}, "options.batch_size"),
        ({"batch_size": 1.5}, "options.batch_size"),
        ({"split_size_mb": 0}, "options.split_size_mb"),
        ({"split_size_mb": 20_000}, "options.split_size_mb"),
        ({"delimiter": ";;"}, "options.delimiter"),
        ({"upload_concurrency": 65}, "options.upload_concurrency"),
        ({"upload_concurrency": True}, "options.upload_concurrency"),
    ],
)
def test_ingest_options_refusals(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        IngestOptions.parse(data)


def test_ingest_options_keep_the_optional_ones_only_when_given() -> None:
    out = IngestOptions.parse({"delimiter": ";", "upload_concurrency": 8}).to_json()
    assert out["delimiter"] == ";" and out["upload_concurrency"] == 8
    assert "delimiter" not in IngestOptions.parse({}).to_json()
