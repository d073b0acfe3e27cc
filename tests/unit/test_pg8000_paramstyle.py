"""The memoised pg8000 placeholder rewrite answers exactly what pg8000's own scan does."""

from __future__ import annotations

import pg8000.dbapi
import pg8000.legacy
import pytest

from datalake.catalog import db

QUERIES = [
    "SELECT a FROM t WHERE x = %s AND y = %s",
    "SELECT '%s literal', \"q%s\" FROM t WHERE z = %s -- %s comment\n AND w = %s",
    "SELECT $$ %s $$, E'\\' %s' , %s",
    "SELECT 100%% FROM t WHERE a = %s",
    "INSERT INTO t (a, b) VALUES (%s, %s), (%s, %s)",
]


@pytest.mark.parametrize("query", QUERIES)
def test_the_memoised_rewrite_matches_pg8000(query: str) -> None:
    args = tuple(range(query.count("%s")))
    db._memoise_pg8000_paramstyle()
    memo = pg8000.dbapi.convert_paramstyle
    assert getattr(memo, "_datalake_memoised", False)
    assert pg8000.legacy.convert_paramstyle is memo
    reference = memo.__wrapped__  # type: ignore[attr-defined]
    for _ in range(2):  # the second answer comes from the cache
        got = memo("format", query, args)
        assert got == reference("format", query, args)
        assert got[1] is args


def test_other_styles_are_not_cached() -> None:
    db._memoise_pg8000_paramstyle()
    q, vals = pg8000.dbapi.convert_paramstyle("named", "SELECT :a, :b", {"a": 1, "b": 2})
    assert q == "SELECT $1, $2" and vals == (1, 2)
