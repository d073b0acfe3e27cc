"""`datalake query --as-of T`: what T may be (no I/O: refused before any call)."""

from __future__ import annotations

import datetime as dt

import pytest

from datalake.cli.app import run
from datalake.cli.client import CliError
from datalake.cli.query import parse_instant


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-08T01:02:03Z", dt.datetime(2026, 12, 8, 1, 2, 3, tzinfo=dt.UTC)),
    ("2026-12-08T03:02:03+02:00", dt.datetime(2026, 12, 8, 1, 2, 3, tzinfo=dt.UTC)),
    ("2026-12-08 01:02:03", dt.datetime(2026, 12, 8, 1, 2, 3, tzinfo=dt.UTC)),
    ("2026-12-08", dt.datetime(2026, 12, 8, tzinfo=dt.UTC)),
])
def test_as_of_takes_iso_8601_and_a_zone_less_time_is_utc(text: str, expected: dt.datetime) -> None:
    assert parse_instant(text) == expected


def test_a_bad_as_of_is_one_error_line_before_any_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATALAKE_API_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("DATALAKE_TOKEN", "t")
    with pytest.raises(CliError, match="ISO 8601"):
        parse_instant("yesterday")
    assert run(["query", "select 1 from a.b", "--as-of", "yesterday"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--as-of wants an ISO 8601 timestamp" in err[0]
