"""errors.excerpt: input quoted into an error message is printable, escaped and bounded."""

from __future__ import annotations

from datalake.errors import EXCERPT_LIMIT, excerpt


def test_text_stays_as_it_is() -> None:
    assert excerpt("id,name,élan,東京 ok") == "id,name,élan,東京 ok"


def test_control_and_undecodable_bytes_are_escaped() -> None:
    assert excerpt(b"PAR1\x15\x00\x8b\n\t\x1b[0m") == "PAR1\\x15\\x00\\x8b\\n\\t\\x1b[0m"
    assert excerpt("a\ufffdb\u200bc\x7f") == "a\\ufffdb\\u200bc\\x7f"
    assert all(ch.isprintable() for ch in excerpt(bytes(range(256))))


def test_long_input_is_cut_and_says_how_much_is_left_out() -> None:
    out = excerpt("x" * 1000)
    assert out == "x" * EXCERPT_LIMIT + f"... ({1000 - EXCERPT_LIMIT} more characters)"
    assert excerpt(b"\x00" * 10, limit=8) == "\\x00\\x00... (8 more characters)"
