"""The vocabulary's parsers: every spelling a layer accepts means the same member."""

from __future__ import annotations

import pytest

from datalake.config import Settings
from datalake.domain.evolution import POLICIES, validate_policy
from datalake.domain.vocabulary import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SPLIT_SIZE_MB,
    Compression,
    SchemaPolicy,
    SourceFormat,
)
from datalake.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("evolve", SchemaPolicy.EVOLVE),
        ("Evolve", SchemaPolicy.EVOLVE),
        (" FREEZE ", SchemaPolicy.FREEZE),
        ("discard-columns", SchemaPolicy.DISCARD_COLUMNS),
        ("Discard_Columns", SchemaPolicy.DISCARD_COLUMNS),
        (None, SchemaPolicy.EVOLVE),
    ],
)
def test_policy_spellings(text: str | None, policy: SchemaPolicy) -> None:
    assert SchemaPolicy.parse(text) is policy
    assert validate_policy(text) is policy


def test_unknown_policy_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="schema_policy must be one of"):
        SchemaPolicy.parse("drift")


def test_the_domain_lists_the_vocabulary_policies() -> None:
    assert POLICIES == ("evolve", "freeze", "discard_columns")


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("csv", SourceFormat.CSV),
        ("TSV", SourceFormat.CSV),
        ("json", SourceFormat.JSONL),
        ("JSON", SourceFormat.JSONL),
        ("ndjson", SourceFormat.JSONL),
        ("jsonlines", SourceFormat.JSONL),
        ("Parquet", SourceFormat.PARQUET),
        ("avro", SourceFormat.AVRO),
    ],
)
def test_format_spellings(text: str, fmt: SourceFormat) -> None:
    assert SourceFormat.parse(text) is fmt


def test_unknown_format_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="format must be one of"):
        SourceFormat.parse("xml")


def test_compression_parse() -> None:
    assert Compression.parse("ZSTD") is Compression.ZSTD
    with pytest.raises(InvalidInput, match="compression must be one of"):
        Compression.parse("rar")


def test_settings_defaults_are_the_vocabulary_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATALAKE_DEFAULT_BATCH_SIZE", raising=False)
    monkeypatch.delenv("DATALAKE_DEFAULT_SPLIT_SIZE_MB", raising=False)
    settings = Settings()
    assert settings.default_batch_size == DEFAULT_BATCH_SIZE
    assert settings.default_split_size_mb == DEFAULT_SPLIT_SIZE_MB
