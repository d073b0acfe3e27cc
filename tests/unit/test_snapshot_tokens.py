"""Snapshot tokens and cursors: opaque, signed, bound to their table (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from datalake.catalog.snapshots import Snapshot, encode_cursor, parse_cursor, parse_token
from datalake.errors import InvalidInput

SNAP = Snapshot(table_id="t1", seq=42, taken_at=datetime(2026, 1, 2, 3, 4, 5, 6000, UTC))


def test_token_round_trip() -> None:
    assert parse_token("t1", SNAP.token()) == SNAP
    assert SNAP.expires_at(900) == SNAP.taken_at + timedelta(seconds=900)
    assert SNAP.expires_at(0) is None


def test_cursor_round_trip() -> None:
    snap, after = parse_cursor("t1", encode_cursor(SNAP, "ns/t/k=a/part-1.parquet", "id-9"))
    assert snap == SNAP and after == ("ns/t/k=a/part-1.parquet", "id-9")


@pytest.mark.parametrize(
    "token",
    ["", "x", "1.42", "2.42.0.sig", "1.x.0.sig", "1.42.1767323045006.AAAAAAAAAAAAAAAA"],
)
def test_malformed_or_forged_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidInput):
        parse_token("t1", token)


def test_a_token_changed_or_of_another_table_is_refused() -> None:
    version, seq, ms, sig = SNAP.token().split(".")
    with pytest.raises(InvalidInput):
        parse_token("t1", f"{version}.{int(seq) + 1}.{ms}.{sig}")
    with pytest.raises(InvalidInput):
        parse_token("t2", SNAP.token())
    with pytest.raises(InvalidInput):
        parse_cursor("t2", encode_cursor(SNAP, "k", "i"))


@pytest.mark.parametrize("cursor", ["!!!", "e30", "WzEsMiwzXQ"])  # junk, {}, [1,2,3]
def test_malformed_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        parse_cursor("t1", cursor)
